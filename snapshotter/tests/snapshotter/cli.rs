//! The command line: the subcommands the scripts, the compose file and the fault suite run, and the defaults
//! the README documents.

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
    let Command::Run(args) = cli.command else {
        panic!("`run` parsed as {:?}", cli.command)
    };
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
