//! `tether`: keys, licenses, service credentials, the dongle emulator, the
//! reference services and the demo. `main` parses, runs, and maps errors to
//! one line on stderr and a non-zero exit.

#![forbid(unsafe_code)]

mod attestation;
mod cli;
mod client;
mod demo;
mod dongle;
mod fido2;
mod inspect;
mod install;
mod logs;
mod provision;
mod receipt;
mod run;
mod service;
mod signals;
mod state;
mod usage;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tether: error: {}", tether_authority::error_line(&err));
            ExitCode::from(1)
        }
    }
}

fn run(args: cli::Cli) -> anyhow::Result<ExitCode> {
    use cli::Command;
    match args.command {
        Command::Keygen(cmd) => provision::keygen(cmd),
        Command::License(cmd) => provision::license(cmd),
        Command::Service(cmd) => provision::service(cmd),
        Command::Inspect(args) => inspect::run(&args),
        Command::Dongle(cmd) => dongle::run(cmd),
        Command::Token(args) => client::token(&args),
        Command::Verify(args) => client::verify(&args),
        Command::Health { url } => client::health(&url),
        Command::State(cmd) => state::run(&cmd),
        Command::Site(cmd) => receipt::site(cmd),
        Command::Usage(cmd) => usage::run(&cmd),
        Command::Backend(args) => service::run(service::Kind::Backend, args),
        Command::Muxer(args) => service::run(service::Kind::Muxer, args),
        Command::Run(args) => run::run(args),
        Command::Demo(args) => demo::run(&args),
        Command::Tetherd { args } => {
            let argv = std::iter::once("tetherd".into()).chain(args);
            Ok(tether_authority::main(argv))
        }
    }
}
