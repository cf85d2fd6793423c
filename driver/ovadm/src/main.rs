//! # ovadm: the operator's CLI for overlays
//!
//! Theory statement. `ovadm` is illumos' `dladm` overlay subcommands
//! (`create-overlay`, `delete-overlay`, `modify-overlay`, `show-overlay`)
//! rebuilt over overlayd's control socket, plus `show-stats` for the
//! counters and the vnic subcommands (`create-vnic`, `delete-vnic`,
//! `show-vnic`) for guests on an overlay, and `inject-frame` / `resend-frame`
//! (illumos' `OVERLAY_TARG_INJECT` and `OVERLAY_TARG_RESEND`) to put a
//! frame into an overlay from either side. It holds no state and links only `overlay-api`: each run is one
//! request to `RUN_DIR/overlayd.sock` and one reply, except a target-table dump, which is one request
//! per page (`-p` and `--json` print each page as it arrives).
//!
//! Data flows in three steps, one module each:
//!
//! 1. [`cli`]: clap parses the arguments and they are resolved into an
//!    [`cli::Invocation`] — the [`overlay_api::proto::Request`] to send and
//!    how to print its answer. `-p` properties are split and merged, `-s`
//!    target entries parsed, `-o` fields checked against the chosen table.
//! 2. [`commands`]: connects, sends the request, matches the reply.
//! 3. [`output`]: turns rows into dladm-style columns, `-p` parseable lines
//!    or one line of JSON (pure functions), or writes them a page at a time
//!    (`output::RowStream`).
//!
//! Failure: a usage error prints clap's message and exits 2, before anything
//! is sent. A failed operation — overlayd not reachable, an error reply, a
//! reply of the wrong kind — prints `ovadm: <message>` and exits 1; overlayd's
//! messages already name the overlay or property, so they are printed as
//! they come. A warning attached to a success is printed as
//! `ovadm: warning: <message>` and the exit status stays 0.

pub mod cli;
pub mod commands;
pub mod output;

use std::process::ExitCode;

fn main() -> ExitCode {
    let inv = match cli::parse(std::env::args_os()) {
        Ok(inv) => inv,
        // Prints help/version to stdout (exit 0) or the usage error to stderr (exit 2).
        Err(e) => e.exit(),
    };
    match commands::run(&inv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ovadm: {e}");
            ExitCode::from(1)
        }
    }
}
