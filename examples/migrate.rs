//! Schema migrations from the command line.
//!
//! Finds its server as the quick start and the tests do: `DATABASE_URL` if
//! set (with the `VOIDRUNNER_DB_*` settings), else the local server at
//! 127.0.0.1:5432 (its `postgres` database), else a private throwaway
//! cluster started from the PostgreSQL binaries on this machine (useful only
//! to try the commands: it is removed when the program exits).
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/voidrunner cargo run --example migrate -- up
//! cargo run --example migrate -- status
//! cargo run --example migrate -- down        # revert the newest migration
//! cargo run --example migrate -- down 2      # revert the newest two
//! cargo run --example migrate -- down-to 0   # revert everything
//! ```

use std::process::ExitCode;

use voidrunner_db::{Database, DownTarget};

const USAGE: &str = "usage: migrate up | down [N] | down-to VERSION | status  (server: DATABASE_URL, else 127.0.0.1:5432)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &[&str]) -> Result<(), String> {
    let command = parse(args)?;
    let mut config = voidrunner_db::testing::server_config()
        .await
        .map_err(|e| format!("{e}\n{USAGE}"))?;
    // Migrations use their own connection; the pool needs no warm spares.
    config.min_connections = 0;
    let db = Database::connect_lazy(config).map_err(|e| e.to_string())?;
    match command {
        Command::Up => {
            let applied = db.migrate().await.map_err(|e| e.to_string())?;
            if applied.is_empty() {
                println!("schema already current");
            }
            for v in applied {
                println!("applied V{v}");
            }
        }
        Command::Down(target) => {
            let reverted = db.migrate_down(target).await.map_err(|e| e.to_string())?;
            if reverted.is_empty() {
                println!("nothing to revert");
            }
            for v in reverted {
                println!("reverted V{v}");
            }
        }
        Command::Status => {
            let status = db.migration_status().await.map_err(|e| e.to_string())?;
            println!("{status}");
        }
    }
    Ok(())
}

enum Command {
    Up,
    Down(DownTarget),
    Status,
}

fn parse(args: &[&str]) -> Result<Command, String> {
    match args {
        ["up"] => Ok(Command::Up),
        ["status"] => Ok(Command::Status),
        ["down"] => Ok(Command::Down(DownTarget::Steps(1))),
        ["down", n] => Ok(Command::Down(DownTarget::Steps(number(n)?))),
        ["down-to", v] => Ok(Command::Down(DownTarget::ToVersion(number(v)?))),
        _ => Err(USAGE.to_owned()),
    }
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not a non-negative number\n{USAGE}"))
}
