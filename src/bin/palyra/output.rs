//! What the CLI prints: JSON, aligned tables, and the system browser for links.

use palyra_actors::registry::AuthProfileScope;

pub fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Prints rows as a table with aligned columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

pub fn scope_text(scope: &AuthProfileScope) -> String {
    match scope {
        AuthProfileScope::Global => "global".into(),
        AuthProfileScope::Agent { agent_id } => format!("agent:{agent_id}"),
    }
}

pub fn open_browser(url: &str) {
    // Only a link of the daemon's own form goes to the system opener.
    if !url.starts_with("http://") && !url.starts_with("https://") {
        eprintln!("palyra: not opening an unexpected link; open it by hand");
        return;
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener).arg(url).spawn() {
        eprintln!("palyra: cannot start {opener}: {e}; open the link by hand");
    }
}
