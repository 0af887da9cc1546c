//! The settings' unit tests: defaults, files and environment overrides, validation.

use super::*;

#[test]
fn defaults_parse() {
    let s = Settings::defaults();
    assert_eq!(s.server.bind, "127.0.0.1:7142");
    assert_eq!(s.sessions.idle_timeout_s, 900);
    assert_eq!(s.browser.max_sessions, 4);
    assert_eq!(s.browser.idle_timeout_s, 600);
    assert!(!s.browser.allow_private_networks);
}

#[test]
fn browser_settings_are_checked_at_start() {
    for (key, value, expected) in [
        ("PALYRA_BROWSER__MAX_SESSIONS", "0", "browser.max_sessions"),
        (
            "PALYRA_BROWSER__VIEWPORT_WIDTH",
            "5",
            "browser.viewport_width",
        ),
        (
            "PALYRA_BROWSER__NAVIGATION_TIMEOUT_S",
            "0",
            "browser.navigation_timeout_s",
        ),
        (
            "PALYRA_BROWSER__CONTENT_MAX_BYTES",
            "10",
            "browser.content_max_bytes",
        ),
        (
            "PALYRA_BROWSER__DNS_SERVERS",
            r#"["192.0.2.53"]"#,
            "browser.dns_servers",
        ),
        ("PALYRA_BROWSER__USER", " ", "browser.user"),
        (
            "PALYRA_BROWSER__PROFILES_DIR",
            "/srv/palyra/data/profiles",
            "browser.profiles_dir",
        ),
    ] {
        let mut env = vec![(key.to_owned(), value.to_owned())];
        env.push(("PALYRA_DATA_DIR".to_owned(), "/srv/palyra/data".to_owned()));
        let err = Settings::load(None, env, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains(expected), "{key}: {err}");
    }
    let env = vec![(
        "PALYRA_BROWSER__CHROMIUM_PATH".to_owned(),
        "/opt/chromium/chrome".to_owned(),
    )];
    let s = Settings::load(None, env, &Overrides::default()).unwrap();
    assert_eq!(
        s.browser.chromium_path,
        std::path::PathBuf::from("/opt/chromium/chrome")
    );
    // Profiles: outside the data dir by default, one root per data dir.
    assert_eq!(s.browser.user, "nobody");
    let data = std::path::Path::new("/srv/palyra/data");
    let root = s.browser.profiles_root(data);
    assert!(!root.starts_with(data), "{}", root.display());
    assert_eq!(root, s.browser.profiles_root(data));
    assert_ne!(
        root,
        s.browser.profiles_root(std::path::Path::new("/srv/other"))
    );
    let env = vec![
        (
            "PALYRA_BROWSER__DNS_SERVERS".to_owned(),
            r#"["127.0.0.1:5353", "[::1]:53"]"#.to_owned(),
        ),
        ("PALYRA_BIND".to_owned(), "[::1]:7142".to_owned()),
    ];
    let s = Settings::load(None, env, &Overrides::default()).unwrap();
    assert_eq!(s.browser.dns_servers, ["127.0.0.1:5353", "[::1]:53"]);
    assert_eq!(s.server.bind, "[::1]:7142");
}

#[test]
fn layers_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "[server]\nbind = \"127.0.0.1:1\"\n[sessions]\nidle_timeout_s = 5\nmax_live = 7\n",
    )
    .unwrap();
    let env = vec![
        ("PALYRA_SESSIONS__IDLE_TIMEOUT_S".to_owned(), "6".to_owned()),
        ("PALYRA_BIND".to_owned(), "127.0.0.1:2".to_owned()),
        ("HOME".to_owned(), "/x".to_owned()),
    ];
    let overrides = Overrides {
        bind: Some("127.0.0.1:3".into()),
        ..Overrides::default()
    };
    let s = Settings::load(Some(&file), env, &overrides).unwrap();
    assert_eq!(s.server.bind, "127.0.0.1:3");
    assert_eq!(s.sessions.idle_timeout_s, 6);
    assert_eq!(s.sessions.max_live, 7);
    assert_eq!(s.sessions.absolute_timeout_s, 28800);
}

#[test]
fn the_example_config_file_loads() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/palyra.example.toml");
    let s = Settings::load(Some(&file), vec![], &Overrides::default()).unwrap();
    assert_eq!(
        s.providers
            .directory()
            .get("custom:acme")
            .unwrap()
            .api_base_url,
        "https://llm.acme.example"
    );
    let env = vec![
        (
            "PALYRA_PROVIDERS__OPENAI__API_BASE_URL".to_owned(),
            "http://127.0.0.1:9".to_owned(),
        ),
        ("PALYRA_DATA_DIR".to_owned(), "2024".to_owned()),
    ];
    let s = Settings::load(None, env, &Overrides::default()).unwrap();
    assert_eq!(s.providers.openai.api_base_url, "http://127.0.0.1:9");
    assert_eq!(
        s.storage.data_dir.unwrap(),
        std::path::PathBuf::from("2024")
    );
}

#[test]
fn unknown_keys_and_short_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "[server]\nbindd = \"x\"\n").unwrap();
    let err = Settings::load(Some(&file), vec![], &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("bindd"), "{err}");
    std::fs::write(&file, "[server]\nadmin_token = \"short\"\n").unwrap();
    let err = Settings::load(Some(&file), vec![], &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("at least 32"), "{err}");
    assert!(!err.to_string().contains("short"), "{err}");
}

#[test]
fn provider_urls_with_credentials_are_refused() {
    let env = vec![(
        "PALYRA_PROVIDERS__OPENAI__API_BASE_URL".to_owned(),
        "https://user:secret@api.example.com".to_owned(),
    )];
    let err = Settings::load(None, env, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("without user:password@"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}
