//! `palyra usage`: tokens and cost estimates per agent, profile, model or objective.

use clap::Args;
use palyra::client::usage::UsageParams;
use palyra::client::{ClientError, ControlPlaneClient};
use palyra_actors::usage::GroupBy;

use crate::output::{print_json, print_table};

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// agent, profile, model or objective.
    #[arg(long, value_parser = parse_group_by, default_value = "agent")]
    group_by: GroupBy,
    /// First local day (YYYY-MM-DD); default 29 days before --to.
    #[arg(long)]
    from: Option<String>,
    /// Last local day (YYYY-MM-DD); default today.
    #[arg(long)]
    to: Option<String>,
    /// IANA time zone the days are counted in (default UTC).
    #[arg(long)]
    tz: Option<String>,
    /// One row per group and day instead of one per group.
    #[arg(long)]
    daily: bool,
}

fn parse_group_by(s: &str) -> Result<GroupBy, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| "one of agent, profile, model, objective".to_owned())
}

fn cost(c: Option<f64>) -> String {
    c.map_or_else(|| "-".to_owned(), |c| format!("{c:.4}"))
}

pub async fn usage(
    json: bool,
    client: &ControlPlaneClient,
    args: &UsageArgs,
) -> Result<(), ClientError> {
    let report = client
        .usage(&UsageParams {
            group_by: Some(args.group_by),
            from: args.from.clone(),
            to: args.to.clone(),
            tz: args.tz.clone(),
        })
        .await?;
    if json {
        print_json(&report);
        return Ok(());
    }
    println!("{} to {} ({})", report.from, report.to, report.tz);
    if args.daily {
        let rows: Vec<Vec<String>> = report
            .days
            .iter()
            .map(|d| {
                vec![
                    d.day.to_string(),
                    d.key.clone(),
                    d.input_tokens.to_string(),
                    d.output_tokens.to_string(),
                    d.calls.to_string(),
                    cost(d.cost_usd),
                ]
            })
            .collect();
        print_table(
            &["DAY", "KEY", "INPUT", "OUTPUT", "CALLS", "COST_USD"],
            &rows,
        );
    } else {
        let rows: Vec<Vec<String>> = report
            .groups
            .iter()
            .map(|g| {
                vec![
                    g.key.clone(),
                    g.input_tokens.to_string(),
                    g.output_tokens.to_string(),
                    g.calls.to_string(),
                    cost(g.cost_usd),
                ]
            })
            .collect();
        print_table(&["KEY", "INPUT", "OUTPUT", "CALLS", "COST_USD"], &rows);
    }
    Ok(())
}
