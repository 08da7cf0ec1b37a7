//! The `exwatch` binary: parse flags, validate them into settings, run the command, map
//! its outcome to an exit status (0 clean, 1 findings listed in `--fail-on`, 2 bad input
//! or configuration, or nothing checked).

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use exwatch::command::{self, manual, Outcome};

fn main() -> ExitCode {
    let matches = cli::Args::command().get_matches();
    let args = cli::Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(args, &matches) {
        Ok(outcome) => ExitCode::from(outcome.exit_status()),
        Err(message) => {
            eprintln!("exwatch: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: cli::Args, matches: &clap::ArgMatches) -> Result<Outcome, command::Error> {
    match args.command {
        cli::Command::Analyze(flags) => command::analyze::run(cli::analyze(flags)?),
        cli::Command::Live(flags) => {
            let given = matches.subcommand_matches("live").unwrap_or(matches);
            command::live::run(cli::live(flags, given)?)
        }
        cli::Command::Learn(flags) => command::learn::run(cli::learn(flags)?),
        cli::Command::Report(flags) => command::report::run(cli::report(flags)?),
        cli::Command::Check(flags) => command::check::run(&cli::check(flags)),
        cli::Command::Compare(flags) => command::compare::run(&cli::compare(flags)?),
        cli::Command::Generate(flags) => command::generate::run(&cli::generate(flags)),
        cli::Command::Collect(flags) => command::collect::run(cli::collect(flags)?),
        cli::Command::Completions(flags) => printed(&manual::completions(cli::Args::command(), flags.shell)),
        cli::Command::Man(flags) => {
            printed(&manual::man_page(cli::Args::command(), flags.command.as_deref())?)
        }
    }
}

fn printed(bytes: &[u8]) -> Result<Outcome, command::Error> {
    command::print(bytes).map(|_| Outcome::Clean)
}
