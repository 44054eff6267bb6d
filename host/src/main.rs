//! `gymnos-host`: the command line. Plugin commands live here and never load libtorch;
//! training commands are handed to the engine binary (see `cli/engine.rs`).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    gymnos_host::terminal::one_line_panic_hook();
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            // One line: the context chain joined by ": ".
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
