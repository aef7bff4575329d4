//! `fpsync show ...`, `ipsec ha ...` and `logs`: the instances' consoles
//! and counters through the bus, OpenMetrics text, and the journal of one
//! instance.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use super::status::n;
use super::status::print_status;
use super::status::targets;
use super::{connect, dbus_message, proxy, status_json, CliError, HaAction, Show};

pub(super) async fn show(
    address: &Option<String>,
    what: Show,
    instance: Option<u32>,
    blade: Option<u32>,
    json: bool,
) -> Result<ExitCode, CliError> {
    let conn = connect(address).await?;
    let p = proxy(&conn).await?;
    let st = status_json(&p).await?;
    let keep_instance = |i: &Value| instance.is_none_or(|x| i["id"].as_u64() == Some(x as u64));
    let keep_blade = |b: &Value| blade.is_none_or(|x| b["id"].as_u64() == Some(x as u64));
    match what {
        Show::Instances | Show::Blades => {
            let mut view = st.clone();
            if let Some(a) = view["instances"].as_array_mut() {
                a.retain(|i| {
                    keep_instance(i)
                        && blade.is_none_or(|b| {
                            i["blades"]
                                .as_array()
                                .is_some_and(|bs| bs.iter().any(|x| x.as_u64() == Some(b as u64)))
                        })
                });
            }
            if let Some(a) = view["blades"].as_array_mut() {
                a.retain(|b| {
                    keep_blade(b)
                        && instance.is_none_or(|i| b["instance"].as_u64() == Some(i as u64))
                });
            }
            let key = if matches!(what, Show::Instances) {
                "instances"
            } else {
                "blades"
            };
            if json {
                println!("{}", view[key]);
            } else {
                if matches!(what, Show::Instances) {
                    view["blades"] = Value::Array(vec![]);
                } else {
                    view["instances"] = Value::Array(vec![]);
                }
                print_status(&view);
            }
        }
        Show::Stats => {
            let stats: Value = serde_json::from_str(&p.statistics().await?)
                .map_err(|e| CliError::Msg(format!("bad Statistics answer: {e}")))?;
            let wanted: Option<Vec<String>> = match (instance, blade) {
                (None, None) => None,
                (_, Some(b)) => Some(vec![b.to_string()]),
                (Some(i), None) => Some(
                    st["instances"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|x| x["id"].as_u64() == Some(i as u64))
                        .flat_map(|x| x["blades"].as_array().cloned().unwrap_or_default())
                        .map(|b| b.to_string())
                        .collect(),
                ),
            };
            if json {
                match &wanted {
                    None => println!("{stats}"),
                    Some(w) => {
                        let blades: serde_json::Map<String, Value> = stats["blades"]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter(|(k, _)| w.contains(k))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        println!("{}", serde_json::json!({"blades": blades}));
                    }
                }
            } else {
                print_stats(&stats, wanted.as_deref());
                // Each instance's ports: the fast path beside Linux.
                for i in targets(&st, instance, blade)? {
                    match p.console(i, "show stats").await {
                        Ok(a) => {
                            println!("== instance {i}: interfaces ==");
                            print!("{a}");
                        }
                        Err(e) => println!("== instance {i}: interfaces: {} ==", dbus_message(&e)),
                    }
                }
            }
        }
        Show::Netlink | Show::Queue | Show::Interfaces | Show::SyncFeatures => {
            let word = match what {
                Show::Netlink => "netlink",
                Show::Queue => "queue",
                Show::Interfaces => "interfaces",
                _ => "sync-features",
            };
            let command = if json {
                format!("show {word} --json")
            } else {
                format!("show {word}")
            };
            let mut out = BTreeMap::new();
            let mut failed = false;
            for i in targets(&st, instance, blade)? {
                match p.console(i, &command).await {
                    Ok(a) => {
                        out.insert(i, Ok(a));
                    }
                    Err(e) => {
                        failed = true;
                        out.insert(i, Err(dbus_message(&e)));
                    }
                }
            }
            if json {
                let m: serde_json::Map<String, Value> = out
                    .into_iter()
                    .map(|(i, a)| {
                        let v = match a {
                            Ok(t) => serde_json::from_str(t.trim()).unwrap_or(Value::String(t)),
                            Err(e) => serde_json::json!({ "error": e }),
                        };
                        (i.to_string(), v)
                    })
                    .collect();
                println!("{}", Value::Object(m));
            } else {
                for (i, a) in out {
                    println!("== instance {i} ==");
                    match a {
                        Ok(t) => print!("{t}"),
                        Err(e) => println!("error: {e}"),
                    }
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `show stats --format openmetrics`: what `Metrics()` answers, as is.
pub(super) async fn openmetrics(address: &Option<String>) -> Result<ExitCode, CliError> {
    let conn = connect(address).await?;
    let p = proxy(&conn).await?;
    print!("{}", p.metrics().await?);
    Ok(ExitCode::SUCCESS)
}

pub(super) fn print_stats(stats: &Value, wanted: Option<&[String]>) {
    let mut names: Vec<String> = stats["total"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    let blades: Vec<(&String, &Value)> = stats["blades"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| wanted.is_none_or(|w| w.contains(k)))
        .collect();
    print!("{:<22}", "COUNTER");
    for (b, _) in &blades {
        print!(" {:>12}", format!("blade {b}"));
    }
    if wanted.is_none() {
        print!(" {:>12}", "total");
    }
    println!();
    for name in &names {
        print!("{name:<22}");
        for (_, v) in &blades {
            // A blade's zero counters are left out of the answer.
            print!(" {:>12}", v[name].as_u64().unwrap_or(0));
        }
        if wanted.is_none() {
            print!(" {:>12}", n(&stats["total"], name));
        }
        println!();
    }
    for (who, e) in stats["errors"].as_object().into_iter().flatten() {
        println!("{who}: {}", e.as_str().unwrap_or(""));
    }
}

pub(super) async fn ipsec(
    address: &Option<String>,
    action: HaAction,
    blades: Vec<u32>,
    json: bool,
) -> Result<ExitCode, CliError> {
    let conn = connect(address).await?;
    let p = proxy(&conn).await?;
    let states = match action {
        HaAction::Show => {
            let all = p.ipsec_ha_status().await?;
            all.into_iter()
                .filter(|(b, _)| blades.is_empty() || blades.contains(b))
                .collect::<BTreeMap<_, _>>()
        }
        HaAction::Enable => p.set_ipsec_ha(true, &blades).await?.into_iter().collect(),
        HaAction::Disable => p.set_ipsec_ha(false, &blades).await?.into_iter().collect(),
    };
    if json {
        let m: serde_json::Map<String, Value> = states
            .iter()
            .map(|(b, s)| (b.to_string(), Value::Bool(*s)))
            .collect();
        println!("{}", Value::Object(m));
    } else {
        for (b, s) in states {
            println!(
                "blade {b}: IPsec High Availability {}",
                if s { "enabled" } else { "disabled" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn logs(
    instance: Option<u32>,
    blade: Option<u32>,
    follow: bool,
    lines: u32,
) -> Result<ExitCode, CliError> {
    if !Path::new("/run/systemd/journal/socket").exists() {
        return Err(CliError::Msg(
            "no journal runs here: the children log to fpsyncd's standard error (<run dir>/fpsyncd.log when `fpsync start` started it)".into(),
        ));
    }
    let (ident, field) = match (instance, blade) {
        (Some(i), _) => (format!("cmgrd{i}"), format!("INSTANCE={i}")),
        (None, Some(b)) => (format!("fpd{b}"), format!("BLADE={b}")),
        _ => {
            return Err(CliError::Msg(
                "name an instance (-I N) or a blade (-b B)".into(),
            ))
        }
    };
    // The child's own lines, and fpsyncd's lines about it.
    let mut cmd = std::process::Command::new("journalctl");
    cmd.args(["--no-pager", "-n", &lines.to_string()])
        .arg(format!("SYSLOG_IDENTIFIER={ident}"))
        .arg("+")
        .arg("SYSLOG_IDENTIFIER=fpsyncd")
        .arg(field);
    if follow {
        cmd.arg("-f");
    }
    let status = cmd
        .status()
        .map_err(|e| CliError::Msg(format!("cannot run journalctl: {e}")))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
