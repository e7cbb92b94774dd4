//! `cargo broadcast`: generates broadcast-core events and rooms.
//!
//! ```text
//! cargo broadcast make event UpdateChat   # src/events/update_chat.rs + src/events/mod.rs
//! cargo broadcast make room ChatRoom      # src/rooms/chat_room.rs + src/rooms/mod.rs
//! ```
//!
//! Installed (`cargo install --path broadcast-cli`), cargo runs it as
//! `cargo-broadcast broadcast make ...`; in the broadcast repository itself,
//! `cargo run -p broadcast-cli -- make event <Name>` (which writes into the
//! nearest project above the current folder). See `cargo broadcast --help`
//! ([`args::HELP`]) for every rule.
#![forbid(unsafe_code)]

mod args;
mod generate;
mod naming;
mod templates;

use std::process::ExitCode;

use args::Command;

fn main() -> ExitCode {
    match args::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", args::HELP);
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("cargo-broadcast {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Make(make)) => {
            let result = std::env::current_dir()
                .map_err(|err| generate::Error::Io {
                    action: "read",
                    path: ".".into(),
                    err,
                })
                .and_then(|cwd| generate::run(&make, &cwd));
            match result {
                Ok(lines) => {
                    for line in lines {
                        println!("{line}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!(
                "error: {e}\n\n{}\n\nFor more information, try `cargo broadcast --help`.",
                args::USAGE
            );
            ExitCode::from(2)
        }
    }
}
