//! The command line: the subcommands the scripts, the compose file and the fault suite run, and the defaults
//! docs/operating.md documents.

use clap::Parser;
use topk_snapshotter::cli::{Cli, Command};

/// Every subcommand parses without flags (each setting has a default or an environment variable), and `run`
/// schedules and keeps history as documented; a retention flag overrides its default.
#[test]
fn subcommands_parse_with_the_documented_defaults() {
    for sub in ["migrate", "run", "snapshot", "rebuild-redis", "verify"] {
        assert!(
            Cli::try_parse_from(["topk-snapshotter", sub]).is_ok(),
            "{sub} did not parse"
        );
    }
    assert!(Cli::try_parse_from(["topk-snapshotter", "rebuild"]).is_err());

    let cli = Cli::try_parse_from(["topk-snapshotter", "run", "--retention-days=0"]).unwrap();
    let Command::Run(run) = cli.command else {
        panic!("`run` parsed as {:?}", cli.command)
    };
    let args = run.store;
    assert_eq!(
        (
            args.minute_schedule.as_str(),
            args.topk_schedule.as_str(),
            args.maintenance_schedule.as_str()
        ),
        ("5 * * * * *", "10 */5 * * * *", "30 17 * * * *")
    );
    let policy = args.retention();
    assert_eq!(
        (
            policy.hourly_after_days,
            policy.daily_after_days,
            policy.drop_after_days
        ),
        (30, 365, 0)
    );
}

/// A schedule that is not a cron expression is refused when the command line is read, naming the setting,
/// not when a standby takes over the lock and builds its jobs (it failed there, late, as `ParseSchedule`).
#[test]
fn a_bad_cron_schedule_is_refused_at_start() {
    for (flag, value) in [
        ("--minute-schedule", "every minute"),
        ("--topk-schedule", "61 * * * * *"),
        ("--maintenance-schedule", "* * *"),
    ] {
        let err = Cli::try_parse_from(["topk-snapshotter", "run", flag, value])
            .expect_err("a bad schedule parsed");
        let message = err.to_string();
        assert!(
            message.contains(flag) && message.contains("cron"),
            "{flag} {value}: {message}"
        );
    }
    assert!(Cli::try_parse_from([
        "topk-snapshotter",
        "run",
        "--minute-schedule",
        "0 */2 * * * *"
    ])
    .is_ok());
}
