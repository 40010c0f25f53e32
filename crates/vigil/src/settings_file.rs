//! The settings file: `vigil --settings vigil.toml …` (or `VIGIL_SETTINGS`), one TOML file
//! for every command, a table per command path and a key per long flag:
//!
//! ```toml
//! [audit.serve]
//! database-url = "postgres://vigil@db/audit"
//! checkpoint-interval = "30s"
//! trusted-peer = ["10.0.0.5"]
//!
//! [auth.serve]
//! token-ttl = "10m"
//! ```
//!
//! Layers, lowest first: the built-in defaults, the file, `VIGIL_*` variables, flags. A file
//! value applies only where neither a flag nor a variable gave one. Every table and key must
//! name a command and one of its flags: a typo is an error, never a silently ignored setting.

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use std::ffi::OsString;
use std::path::Path;

/// `args` with the settings file's values for the invoked command appended as flags (where
/// no flag or variable set them). Unchanged without a settings file.
pub(crate) fn layer(cmd: Command, args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Ok(matches) = cmd.clone().ignore_errors(true).try_get_matches_from(&args) else {
        // --help, --version: nothing to layer.
        return Ok(args);
    };
    let Some(path) = matches.get_one::<std::path::PathBuf>("settings").cloned() else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("reading the settings file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("the settings file {}: {e}", path.display()))?;
    check(&path, &cmd, &table, &mut Vec::new())?;
    let mut args = args;
    let (mut cmd, mut m, mut section) = (cmd, &matches, Some(&table));
    while let Some((name, sub)) = m.subcommand() {
        cmd = cmd
            .find_subcommand(name)
            .cloned()
            .expect("a matched subcommand exists");
        m = sub;
        section = section.and_then(|t| t.get(name)).and_then(|v| v.as_table());
    }
    if let Some(section) = section {
        args.extend(flags(&cmd, m, section));
    }
    Ok(args)
}

/// Every table names a subcommand of `cmd` and every other key one of its long flags.
fn check(
    path: &Path,
    cmd: &Command,
    table: &toml::Table,
    at: &mut Vec<String>,
) -> Result<(), String> {
    for (key, value) in table {
        let here = || {
            if at.is_empty() {
                "the top level".to_owned()
            } else {
                format!("[{}]", at.join("."))
            }
        };
        match value {
            toml::Value::Table(t) => {
                let sub = cmd.find_subcommand(key).ok_or_else(|| {
                    format!(
                        "the settings file {}: {} has no command `{key}`",
                        path.display(),
                        here()
                    )
                })?;
                at.push(key.clone());
                check(path, sub, t, at)?;
                at.pop();
            }
            _ if at.is_empty() => {
                return Err(format!(
                    "the settings file {}: `{key}` must be inside a command's table, e.g. [audit.serve]",
                    path.display()
                ))
            }
            _ => {
                if arg(cmd, key).is_none() {
                    return Err(format!(
                        "the settings file {}: {} has no setting `{key}` (see vigil {} --help)",
                        path.display(),
                        here(),
                        at.join(" ")
                    ));
                }
            }
        }
    }
    Ok(())
}

fn arg<'a>(cmd: &'a Command, long: &str) -> Option<&'a clap::Arg> {
    cmd.get_arguments().find(|a| {
        a.get_long() == Some(long)
            || a.get_all_aliases()
                .is_some_and(|aliases| aliases.contains(&long))
    })
}

/// The section's values as flags, for the arguments no flag or variable set.
fn flags(cmd: &Command, m: &ArgMatches, section: &toml::Table) -> Vec<OsString> {
    let mut out = Vec::new();
    for (key, value) in section {
        let Some(a) = arg(cmd, key) else { continue };
        let given = matches!(
            m.value_source(a.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if given {
            continue;
        }
        let long = a.get_long().expect("found by its long name");
        let values: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            v => vec![v],
        };
        for v in values {
            match (a.get_action(), v) {
                (ArgAction::SetTrue, toml::Value::Boolean(b)) => {
                    if *b {
                        out.push(format!("--{long}").into());
                    }
                }
                (_, toml::Value::String(s)) => out.push(format!("--{long}={s}").into()),
                (_, v) => out.push(format!("--{long}={v}").into()),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn cli() -> Command {
        Command::new("vigil")
            .arg(
                Arg::new("settings")
                    .long("settings")
                    .global(true)
                    .value_parser(clap::value_parser!(std::path::PathBuf)),
            )
            .subcommand(
                Command::new("audit").subcommand(
                    Command::new("serve")
                        .arg(
                            Arg::new("listen")
                                .long("listen")
                                .default_value("127.0.0.1:8080"),
                        )
                        .arg(
                            Arg::new("interval")
                                .long("checkpoint-interval")
                                .alias("checkpoint-interval-secs")
                                .env("VIGIL_TEST_SETTINGS_INTERVAL"),
                        )
                        .arg(
                            Arg::new("peer")
                                .long("trusted-peer")
                                .action(ArgAction::Append),
                        )
                        .arg(
                            Arg::new("trust")
                                .long("trust-headers")
                                .action(ArgAction::SetTrue),
                        ),
                ),
            )
            .subcommand(Command::new("dev").arg(Arg::new("listen").long("listen")))
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn layered(args: &[&str], text: &str) -> Result<ArgMatches, String> {
        let f = file(text);
        let mut argv: Vec<OsString> = vec!["vigil".into(), "--settings".into(), f.path().into()];
        argv.extend(args.iter().map(OsString::from));
        let out = layer(cli(), argv)?;
        Ok(cli().try_get_matches_from(out).unwrap())
    }

    fn serve(m: &ArgMatches) -> &ArgMatches {
        m.subcommand_matches("audit")
            .unwrap()
            .subcommand_matches("serve")
            .unwrap()
    }

    const TEXT: &str = r#"
        [audit.serve]
        listen = "0.0.0.0:9000"
        checkpoint-interval = "30s"
        trusted-peer = ["10.0.0.5", "10.0.0.6"]
        trust-headers = true
        [dev]
        listen = "127.0.0.1:1"
    "#;

    #[test]
    fn the_file_fills_what_flags_did_not_set_and_flags_win() {
        let m = layered(&["audit", "serve", "--listen", "127.0.0.1:7"], TEXT).unwrap();
        let s = serve(&m);
        assert_eq!(s.get_one::<String>("listen").unwrap(), "127.0.0.1:7");
        assert_eq!(s.get_one::<String>("interval").unwrap(), "30s");
        let peers: Vec<&String> = s.get_many("peer").unwrap().collect();
        assert_eq!(peers, ["10.0.0.5", "10.0.0.6"]);
        assert!(s.get_flag("trust"));
        // Another command's table is not applied here.
        let m = layered(&["dev"], TEXT).unwrap();
        assert_eq!(
            m.subcommand_matches("dev")
                .unwrap()
                .get_one::<String>("listen")
                .unwrap(),
            "127.0.0.1:1"
        );
    }

    #[test]
    fn a_variable_wins_over_the_file() {
        // Only this test sets this variable.
        std::env::set_var("VIGIL_TEST_SETTINGS_INTERVAL", "5s");
        let m = layered(&["audit", "serve"], TEXT).unwrap();
        std::env::remove_var("VIGIL_TEST_SETTINGS_INTERVAL");
        assert_eq!(serve(&m).get_one::<String>("interval").unwrap(), "5s");
    }

    #[test]
    fn a_typo_is_an_error_naming_it() {
        let e = layered(&["dev"], "[audit.serve]\ncheckpoint-intervall = \"1s\"\n").unwrap_err();
        assert!(
            e.contains("[audit.serve] has no setting `checkpoint-intervall`"),
            "{e}"
        );
        let e = layered(&["dev"], "[audti.serve]\nlisten = \"x\"\n").unwrap_err();
        assert!(e.contains("has no command `audti`"), "{e}");
        let e = layered(&["dev"], "listen = \"x\"\n").unwrap_err();
        assert!(e.contains("inside a command's table"), "{e}");
        let e = layered(&["dev"], "[dev\n").unwrap_err();
        assert!(e.contains("the settings file"), "{e}");
        // An old flag name (an alias) is a setting too.
        assert!(layered(&["dev"], "[audit.serve]\ncheckpoint-interval-secs = 5\n").is_ok());
    }

    #[test]
    fn without_a_file_nothing_changes() {
        let argv: Vec<OsString> = ["vigil", "dev"].iter().map(OsString::from).collect();
        assert_eq!(layer(cli(), argv.clone()).unwrap(), argv);
    }
}
