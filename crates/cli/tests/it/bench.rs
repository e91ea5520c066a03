//! `bramble bench NAME --quick --json`: each benchmark runs at its small size and reports its
//! figures, baselines and ratios as positive numbers. No test asserts a timing: the figures
//! depend on the machine, and a benchmark is read, not asserted.

use crate::util::{bramble, tempdir};

/// Runs `bramble bench NAME --quick --json` and checks the shape of its report.
fn smoke(name: &str) -> serde_json::Value {
    let tmp = tempdir();
    let run = bramble(tmp.path(), ["bench", name, "--quick", "--json"])
        .success()
        .no_panic();
    let report = run.json();
    assert_eq!(report["bench"], name, "{run}");
    assert_eq!(report["quick"], true, "{run}");
    assert!(
        report["machine"]["cores"].as_u64().is_some_and(|c| c > 0),
        "{run}"
    );
    let rows = report["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows\n{run}"));
    assert!(!rows.is_empty(), "{run}");
    for row in rows {
        for (what, v) in [
            ("figure", &row["figure"]),
            ("baseline figure", &row["baseline"]["figure"]),
            ("ratio", &row["ratio"]),
        ] {
            assert!(
                v.as_f64().is_some_and(|x| x > 0.0 && x.is_finite()),
                "{what} of {} is not a positive number: {v}\n{run}",
                row["name"]
            );
        }
        assert!(
            row["baseline"]["name"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        );
        assert!(row["goal"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(row["goal_met"].is_boolean() || row["goal_met"].is_null());
    }
    report
}

/// The names of a report's rows, in order.
fn row_names(report: &serde_json::Value) -> Vec<&str> {
    report["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect()
}

#[test]
fn bench_seal_quick_reports_figure_baseline_and_ratio() {
    let report = smoke("seal");
    let names = row_names(&report);
    assert!(names.iter().any(|n| n.contains("seal rate")), "{names:?}");
    assert!(names.iter().any(|n| n.contains("compression")), "{names:?}");
}

#[test]
fn bench_relay_quick_reports_figure_baseline_and_ratio() {
    let report = smoke("relay");
    let rows = report["rows"].as_array().map_or(0, Vec::len);
    // frames/s and p99 latency for 1 and 10 devices
    assert_eq!(rows, 4, "{report:#}");
    assert!(
        report["rows"][0]["baseline"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("NATS v2.")),
        "{report:#}"
    );
}

#[test]
fn bench_unknown_name_is_refused_in_plain_words() {
    let tmp = tempdir();
    bramble(tmp.path(), ["bench", "nonesuch"])
        .code(1)
        .no_panic()
        .stderr_has("there is no benchmark named \"nonesuch\"");
}

#[test]
fn bench_activation_quick_reports_wall_times_and_rates() {
    let report = smoke("activation");
    let names = row_names(&report);
    assert!(
        names
            .iter()
            .any(|n| n.contains("activation wall time, 1 at once")),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n.contains("activations per CPU-second of relay and server, 5 at once")),
        "{names:?}"
    );
    // the same batch size with the server taking one activation at a time, for comparison
    assert!(
        names
            .iter()
            .any(|n| n.contains("one at a time in the server")),
        "{names:?}"
    );
    // the devices ran in a child process, whose CPU time is reported apart
    let notes = report["notes"].to_string();
    assert!(notes.contains("ms of CPU an activation"), "{notes}");
}

#[test]
fn bench_idle_quick_reports_memory_per_connection_and_connects() {
    let report = smoke("idle");
    let names = row_names(&report);
    assert_eq!(
        names,
        [
            "user memory per idle device, 400 connected",
            "relay's anonymous memory, 400 connected",
            "device connects/s (TLS 1.3 and PIN proof)"
        ],
        "{report:#}"
    );
    assert!(
        report["rows"][0]["baseline"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("nats-server v2.")),
        "{report:#}"
    );
}

/// Needs Dovecot and Postfix (scripts/test installs them) and root, as the mail tests do.
#[test]
fn bench_push_quick_reports_latency_against_dovecots_callback_and_idle() {
    let report = smoke("push");
    let names = row_names(&report);
    assert_eq!(
        names,
        [
            "push latency, SMTP accepted → on the device, 5 devices: p50",
            "push latency, SMTP accepted → on the device, 5 devices: p90",
            "push latency, SMTP accepted → on the device, 5 devices: p99",
            "push latency, SMTP accepted → on the device, 5 devices: max",
            "push latency p50 against IMAP IDLE, 5 devices",
            "messages on the devices, each once",
        ],
        "{report:#}"
    );
    // every message arrived, none twice (the run fails otherwise)
    assert_eq!(report["rows"][5]["figure"], 10.0, "{report:#}");
    assert_eq!(report["rows"][5]["goal_met"], true, "{report:#}");
}

/// Needs Dovecot and Postfix and root, as `bench push` does. CPU while idle may be 0 over the
/// quick run's 2 s, so the generic positive-figure check is not used for it.
#[test]
fn bench_mailboxes_quick_reports_watching_memory_cpu_and_latency() {
    let tmp = tempdir();
    let run = bramble(tmp.path(), ["bench", "mailboxes", "--quick", "--json"])
        .success()
        .no_panic();
    let report = run.json();
    assert_eq!(report["bench"], "mailboxes", "{run}");
    assert_eq!(
        row_names(&report),
        [
            "time until all 20 mailboxes are watched",
            "server memory per watched mailbox, 20 watched",
            "server CPU while idle, 20 watched",
            "push latency with 20 watched, 3 devices: p50",
            "push latency with 20 watched, 3 devices: p99",
        ],
        "{report:#}"
    );
    for row in report["rows"].as_array().into_iter().flatten() {
        let figure = row["figure"].as_f64();
        assert!(
            figure.is_some_and(|x| x >= 0.0 && x.is_finite()),
            "{}: {figure:?}\n{run}",
            row["name"]
        );
    }
    // watching takes time, and a pushed message cannot arrive before Dovecot's own callback
    // was due: both figures and their baselines are positive
    for i in [0, 3, 4] {
        assert!(
            report["rows"][i]["figure"]
                .as_f64()
                .is_some_and(|x| x > 0.0)
        );
        assert!(
            report["rows"][i]["baseline"]["figure"]
                .as_f64()
                .is_some_and(|x| x > 0.0)
        );
    }
}
