//! `bramble admin policy …`: IT policies — the rule catalogue, BES's preset policies, the
//! organization's own policies with their versions, and which users and groups get which.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use bramble_server::admin::views::{
    NewPolicy, PolicyAssignment, PolicyDiffView, PolicyEdit, PolicyView, PresetView, RuleView,
    UserPolicyView,
};
use reqwest::Method;

use super::{Client, Target, aligned, assigned_text, encode, print_text};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCmd {
    /// List the IT policies: the presets and the organization's own, with their current
    /// version and who they are assigned to.
    List,
    /// List the IT policy rules a policy can set: what each takes, its default, what it does.
    Rules,
    /// List BES's preset IT policies and the rules each sets away from the defaults.
    Presets,
    /// Show an IT policy: every rule's value, who it is assigned to, its versions.
    // its own --version, not bramble's
    #[command(disable_version_flag = true)]
    Show {
        /// The policy's name (quote a name with spaces: "Basic Password Security").
        name: String,
        /// Show this earlier version's rules instead of the current ones.
        #[arg(long, value_name = "V")]
        version: Option<u32>,
    },
    /// Make a new IT policy, from the defaults or as a copy of a preset or another policy.
    Create {
        /// A name for it (not one of the presets').
        name: String,
        /// Start from this preset or existing policy instead of the rules' defaults.
        #[arg(long, value_name = "PRESET_OR_POLICY")]
        from: Option<String>,
        /// What it is for.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Set a rule, e.g. --set password_min_length=8 (may be given again); see `policy rules`.
        #[arg(long = "set", value_name = "RULE=VALUE", value_parser = parse_rule)]
        set: Vec<(String, String)>,
    },
    /// Change an IT policy's rules, which makes a new version of it; the users who have it
    /// get the new version.
    ///
    /// Quote a value with spaces: "password_complexity=letters and digits".
    #[command(group(
        clap::ArgGroup::new("change")
            .required(true)
            .multiple(true)
            .args(["rules", "reset", "description"])
    ))]
    Set {
        /// The policy's name.
        name: String,
        /// Rules to set, e.g. password_required=true password_min_length=8.
        #[arg(value_name = "RULE=VALUE", value_parser = parse_rule)]
        rules: Vec<(String, String)>,
        /// Put a rule back to its default (may be given again).
        #[arg(long, value_name = "RULE")]
        reset: Vec<String>,
        /// Why, kept with the new version (shown by `policy versions`).
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// A new description (on its own, this makes no new version).
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// List an IT policy's versions: when each was made, by whom and why.
    Versions {
        /// The policy's name.
        name: String,
    },
    /// Show what changed between two versions of an IT policy.
    Diff {
        /// The policy's name.
        name: String,
        /// The earlier version.
        v1: u32,
        /// The later version.
        v2: u32,
    },
    /// Assign an IT policy to a user or a group. A user's own policy wins over their
    /// groups'; a user with neither gets the Default policy.
    Assign {
        /// The policy's name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Remove the IT policy assigned to a user or a group; the user's groups' policy, or the
    /// Default policy, applies instead.
    Unassign {
        #[command(flatten)]
        target: Target,
    },
    /// Delete an IT policy (the server refuses while it is assigned).
    Delete {
        /// The policy's name.
        name: String,
    },
}

/// `RULE=VALUE`: split at the first `=`; the value may contain spaces and `=`.
pub(super) fn parse_rule(arg: &str) -> Result<(String, String), String> {
    let Some((rule, value)) = arg.split_once('=') else {
        return Err(format!(
            "{arg:?} is not RULE=VALUE (e.g. password_min_length=8); see `bramble admin policy rules`"
        ));
    };
    let (rule, value) = (rule.trim(), value.trim());
    if rule.is_empty() {
        return Err(format!("{arg:?} names no rule before the '='"));
    }
    if value.is_empty() {
        return Err(format!(
            "{arg:?} gives no value after the '='; to put a rule back to its default, use --reset {rule}"
        ));
    }
    Ok((rule.to_owned(), value.to_owned()))
}

/// The rules given as a map; a rule given twice, or also in `reset`, is an error.
fn rules_map(pairs: Vec<(String, String)>, reset: &[String]) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for (rule, value) in pairs {
        if reset.contains(&rule) {
            bail!("{rule} is both set and reset; say one of the two");
        }
        if let Some(old) = map.insert(rule.clone(), value.clone())
            && old != value
        {
            bail!("{rule} is given twice ({old:?} and {value:?}); say it once");
        }
    }
    Ok(map)
}

/// The catalogue, one rule to a paragraph.
pub(super) fn render_rules(rules: &[RuleView]) -> String {
    let mut out = String::new();
    for r in rules {
        out.push_str(&format!(
            "{}\n  takes {}; default {}\n  {}\n",
            r.name, r.takes, r.default, r.description
        ));
    }
    out
}

/// The presets, one to a paragraph, with the rules each sets.
pub(super) fn render_presets(presets: &[PresetView]) -> String {
    let mut out = String::new();
    for (i, p) in presets.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{}\n  {}\n", p.name, p.description));
        if p.overrides.is_empty() {
            out.push_str("  every rule at its default\n");
        } else {
            let rows: Vec<Vec<String>> = p
                .overrides
                .iter()
                .map(|(k, v)| vec![k.clone(), v.clone()])
                .collect();
            out.push_str(&aligned("    ", &rows));
        }
    }
    out
}

/// `policy show`: the header, the rules, the versions (when the view has them).
pub(super) fn render_policy(p: &PolicyView) -> String {
    let mut head = vec![vec!["IT policy".to_owned(), p.name.clone()]];
    if let Some(d) = &p.description {
        head.push(vec!["About".to_owned(), d.clone()]);
    }
    let current = p.versions.iter().map(|v| v.version).max();
    let version = match current {
        Some(c) if c != p.version => format!("{} (the current one is {c})", p.version),
        _ => p.version.to_string(),
    };
    head.push(vec![
        "Version".to_owned(),
        format!("{version}, made {}", p.updated_at),
    ]);
    let mut assigned = assigned_text(&p.users, &p.groups);
    if p.name == "Default" {
        assigned = if assigned == "nobody" {
            "every user with no other IT policy".to_owned()
        } else {
            format!("{assigned}, and every user with no other IT policy")
        };
    }
    head.push(vec!["Assigned to".to_owned(), assigned]);
    let mut out = aligned("", &head);
    if !p.rules.is_empty() {
        out.push_str("Rules\n");
        let rows: Vec<Vec<String>> = p
            .rules
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.value.clone(),
                    if r.is_default { "(default)" } else { "" }.to_owned(),
                ]
            })
            .collect();
        out.push_str(&aligned("  ", &rows));
    }
    if !p.versions.is_empty() {
        out.push_str("Versions\n");
        let rows: Vec<Vec<String>> = version_rows(p)
            .into_iter()
            .map(|mut r| {
                if !r[2].is_empty() {
                    r[2] = format!("by {}", r[2]);
                }
                r
            })
            .collect();
        out.push_str(&aligned("  ", &rows));
    }
    out
}

/// One row per version: "v3", when, by whom, the note; the current one marked.
fn version_rows(p: &PolicyView) -> Vec<Vec<String>> {
    let current = p.versions.iter().map(|v| v.version).max();
    p.versions
        .iter()
        .map(|v| {
            vec![
                if Some(v.version) == current {
                    format!("v{} (current)", v.version)
                } else {
                    format!("v{}", v.version)
                },
                v.created_at.clone(),
                v.created_by.clone().unwrap_or_default(),
                v.note.clone().unwrap_or_default(),
            ]
        })
        .collect()
}

/// `policy diff`: a heading, then what changed, one rule to a line.
pub(super) fn render_diff(d: &PolicyDiffView) -> String {
    if d.changes.is_empty() {
        return format!(
            "IT policy {}: versions {} and {} set the same rules.\n",
            d.name, d.from, d.to
        );
    }
    let mut out = format!(
        "IT policy {}, from version {} to version {}:\n",
        d.name, d.from, d.to
    );
    for c in &d.changes {
        let text = if c.text.is_empty() {
            match (&c.from, &c.to) {
                (None, Some(to)) => format!("+ {} = {to}", c.rule),
                (Some(from), None) => format!("- {} = {from}", c.rule),
                (Some(from), Some(to)) => format!("{}: {from} -> {to}", c.rule),
                (None, None) => c.rule.clone(),
            }
        } else {
            c.text.clone()
        };
        out.push_str(&format!("  {text}\n"));
    }
    out
}

/// "assigned to the user", "from group Sales", "by default".
pub(super) fn source_text(source: &str) -> String {
    match source {
        "user" => "assigned to the user".to_owned(),
        "default" => "by default".to_owned(),
        other => format!("from {other}"),
    }
}

/// The "IT policy" section of `user show`: the policy in force and where it came from, every
/// assignment considered (the winner marked), and what the device did with it.
pub(super) fn render_user_policy(p: &UserPolicyView) -> String {
    let mut out = format!(
        "IT policy  {} v{} ({})\n",
        p.policy,
        p.version,
        source_text(&p.source)
    );
    let rows: Vec<Vec<String>> = p
        .trace
        .iter()
        .map(|t| {
            vec![
                format!("{} {}", if t.won { "*" } else { " " }, t.source),
                t.policy.clone(),
                t.why.clone(),
            ]
        })
        .collect();
    out.push_str(&aligned("           ", &rows));
    match &p.device {
        None => out.push_str("           Device: none activated\n"),
        Some(d) => {
            let mut line = if d.applied {
                format!(
                    "Device: applied at {}",
                    d.applied_at.as_deref().unwrap_or("an unknown time")
                )
            } else {
                format!(
                    "Device: sent at {} ({} {}), not applied yet",
                    d.sent_at,
                    d.send_count,
                    if d.send_count == 1 { "time" } else { "times" }
                )
            };
            if d.policy != p.policy || d.version != p.version {
                line.push_str(&format!(
                    " — that is {} v{}, not the policy in force",
                    d.policy, d.version
                ));
            }
            if d.applied {
                if d.compliant {
                    line.push_str(", compliant");
                } else if d.problems.is_empty() {
                    line.push_str(", not compliant");
                } else {
                    line.push_str(", not compliant:");
                }
            }
            out.push_str(&format!("           {line}\n"));
            if d.applied && !d.compliant {
                for problem in &d.problems {
                    out.push_str(&format!("             - {problem}\n"));
                }
            }
        }
    }
    out
}

impl Client {
    async fn policy(&self, name: &str, version: Option<u32>) -> Result<PolicyView> {
        match version {
            None => self.get(&format!("/policies/{}", encode(name))).await,
            Some(v) => {
                self.get(&format!("/policies/{}/versions/{v}", encode(name)))
                    .await
            }
        }
    }

    async fn policy_diff(&self, name: &str, from: u32, to: u32) -> Result<PolicyDiffView> {
        self.get(&format!(
            "/policies/{}/diff?from={from}&to={to}",
            encode(name)
        ))
        .await
    }
}

pub(super) async fn run(client: &Client, json: bool, command: PolicyCmd) -> Result<()> {
    match command {
        PolicyCmd::List => {
            let list: Vec<PolicyView> = client.get_all("/policies", None).await?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.version.to_string(),
                        p.updated_at.clone(),
                        assigned_text(&p.users, &p.groups),
                        p.description.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(
                &["NAME", "VERSION", "CHANGED", "ASSIGNED TO", "DESCRIPTION"],
                &rows,
            );
        }
        PolicyCmd::Rules => {
            let rules: Vec<RuleView> = client.get("/policy-rules").await?;
            if json {
                return output::json(&rules);
            }
            print_text(&render_rules(&rules))?;
        }
        PolicyCmd::Presets => {
            let presets: Vec<PresetView> = client.get("/policy-presets").await?;
            if json {
                return output::json(&presets);
            }
            print_text(&render_presets(&presets))?;
        }
        PolicyCmd::Show { name, version } => {
            let p = client.policy(&name, version).await?;
            if json {
                return output::json(&p);
            }
            print_text(&render_policy(&p))?;
        }
        PolicyCmd::Create {
            name,
            from,
            description,
            set,
        } => {
            let body = NewPolicy {
                name,
                description,
                from: from.clone(),
                rules: rules_map(set, &[])?,
            };
            let p: PolicyView = client.with_body(Method::POST, "/policies", &body).await?;
            if json {
                return output::json(&p);
            }
            match &from {
                Some(f) => println!("Created IT policy {} from {f}.", p.name),
                None => println!("Created IT policy {}.", p.name),
            }
            print_text(&render_policy(&p))?;
            println!(
                "Next: bramble admin policy assign {:?} --user EMAIL | --group GROUP",
                p.name
            );
        }
        PolicyCmd::Set {
            name,
            rules,
            reset,
            note,
            description,
        } => {
            let changes_rules = !rules.is_empty() || !reset.is_empty();
            let body = PolicyEdit {
                rules: rules_map(rules, &reset)?,
                reset,
                note,
                description,
            };
            let p: PolicyView = client
                .with_body(
                    Method::PATCH,
                    &format!("/policies/{}", encode(&name)),
                    &body,
                )
                .await?;
            if json {
                return output::json(&p);
            }
            if !changes_rules {
                println!("Changed the description of IT policy {}.", p.name);
                return Ok(());
            }
            println!(
                "IT policy {} is now version {}; its users' devices get it.",
                p.name, p.version
            );
            if p.version > 1 {
                // the change itself, as a diff; the change is made even if this fails
                match client.policy_diff(&p.name, p.version - 1, p.version).await {
                    Ok(d) => print_text(&render_diff(&d))?,
                    Err(_) => println!(
                        "See what changed with: bramble admin policy diff {:?} {} {}",
                        p.name,
                        p.version - 1,
                        p.version
                    ),
                }
            }
        }
        PolicyCmd::Versions { name } => {
            let p = client.policy(&name, None).await?;
            if json {
                return output::json(&p.versions);
            }
            let rows: Vec<Vec<String>> = version_rows(&p);
            output::table(&["VERSION", "MADE", "BY", "NOTE"], &rows);
        }
        PolicyCmd::Diff { name, v1, v2 } => {
            let d = client.policy_diff(&name, v1, v2).await?;
            if json {
                return output::json(&d);
            }
            print_text(&render_diff(&d))?;
        }
        PolicyCmd::Assign { name, target } => {
            let body = PolicyAssignment {
                policy: Some(name.clone()),
            };
            client
                .no_answer(Method::PUT, &target.path("policy"), Some(&body))
                .await?;
            if json {
                let mut v = target.json();
                v["policy"] = name.into();
                return output::json(&v);
            }
            match &target.user {
                Some(u) => println!(
                    "Assigned IT policy {name} to {u}; it wins over their groups' policies. \
                     See it with: bramble admin user show {u}"
                ),
                None => println!(
                    "Assigned IT policy {name} to {}; its members without a policy of their own get it.",
                    target.text()
                ),
            }
        }
        PolicyCmd::Unassign { target } => {
            client
                .no_answer(
                    Method::PUT,
                    &target.path("policy"),
                    Some(&PolicyAssignment { policy: None }),
                )
                .await?;
            if json {
                let mut v = target.json();
                v["policy"] = serde_json::Value::Null;
                return output::json(&v);
            }
            match &target.user {
                Some(u) => println!(
                    "{u} has no IT policy of their own now; their groups' policy, or the Default policy, applies."
                ),
                None => println!(
                    "{} has no IT policy now; its members get another group's policy or the Default policy.",
                    target.text()
                ),
            }
        }
        PolicyCmd::Delete { name } => {
            client
                .no_answer::<()>(
                    Method::DELETE,
                    &format!("/policies/{}", encode(&name)),
                    None,
                )
                .await?;
            if json {
                return output::json(&serde_json::json!({ "deleted": name }));
            }
            println!("Deleted IT policy {name}.");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bramble_server::admin::views::{
        DevicePolicyView, PolicyRuleView, PolicyVersionView, RuleChangeView, TraceStep,
    };

    use super::*;

    #[test]
    fn rule_value_splits_at_the_first_equals_sign() {
        assert_eq!(
            parse_rule("password_min_length=8"),
            Ok(("password_min_length".into(), "8".into()))
        );
        assert_eq!(
            parse_rule("password_complexity=letters and digits"),
            Ok(("password_complexity".into(), "letters and digits".into()))
        );
        assert_eq!(parse_rule("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_rule(" a = b "), Ok(("a".into(), "b".into())));
    }

    #[test]
    fn rule_value_errors_name_the_argument() {
        let e = parse_rule("password_required").expect_err("no =");
        assert!(e.contains("\"password_required\""), "{e}");
        assert!(e.contains("RULE=VALUE"), "{e}");
        let e = parse_rule("=8").expect_err("no rule");
        assert!(e.contains("\"=8\""), "{e}");
        let e = parse_rule("password_min_length=").expect_err("no value");
        assert!(e.contains("--reset password_min_length"), "{e}");
    }

    #[test]
    fn rules_given_twice_or_also_reset_are_refused() {
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        let m = rules_map(vec![pair("a", "1"), pair("b", "2"), pair("a", "1")], &[])
            .expect("the same value twice is fine");
        assert_eq!(m.len(), 2);
        let e = rules_map(vec![pair("a", "1"), pair("a", "2")], &[]).expect_err("two values");
        assert!(e.to_string().contains("a is given twice"), "{e}");
        let e = rules_map(vec![pair("a", "1")], &["a".into()]).expect_err("set and reset");
        assert!(e.to_string().contains("both set and reset"), "{e}");
    }

    fn step(source: &str, policy: &str, won: bool, why: &str) -> TraceStep {
        TraceStep {
            source: source.into(),
            policy: policy.into(),
            won,
            why: why.into(),
        }
    }

    fn device(applied: bool, compliant: bool, problems: &[&str]) -> DevicePolicyView {
        DevicePolicyView {
            pin: "2a3b4c5d".into(),
            policy: "Basic Password Security".into(),
            version: 3,
            sent_at: "2024-05-01T10:00:00Z".into(),
            send_count: 1,
            applied,
            applied_at: applied.then(|| "2024-05-01T10:00:05Z".into()),
            compliant,
            problems: problems.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn user_policy(device: Option<DevicePolicyView>) -> UserPolicyView {
        UserPolicyView {
            policy: "Basic Password Security".into(),
            version: 3,
            source: "group Sales".into(),
            trace: vec![
                step("user", "-", false, "no policy is assigned to the user"),
                step(
                    "group Sales",
                    "Basic Password Security",
                    true,
                    "the first group in name order",
                ),
                step(
                    "group Support",
                    "Advanced Security",
                    false,
                    "Sales comes first",
                ),
                step("default", "Default", false, "a group's policy applies"),
            ],
            device,
        }
    }

    #[test]
    fn a_trace_shows_the_winner_and_the_device() {
        let text = render_user_policy(&user_policy(Some(device(true, true, &[]))));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "IT policy  Basic Password Security v3 (from group Sales)"
        );
        assert_eq!(
            lines[2],
            "           * group Sales    Basic Password Security  the first group in name order"
        );
        assert_eq!(
            lines[3],
            "             group Support  Advanced Security        Sales comes first"
        );
        assert_eq!(
            lines[5],
            "           Device: applied at 2024-05-01T10:00:05Z, compliant"
        );
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn a_trace_shows_the_devices_problems() {
        let text = render_user_policy(&user_policy(Some(device(
            true,
            false,
            &["the device password is shorter than 8 characters"],
        ))));
        assert!(
            text.contains(
                "Device: applied at 2024-05-01T10:00:05Z, not compliant:\n             - the device password is shorter than 8 characters\n"
            ),
            "{text}"
        );
        let text = render_user_policy(&user_policy(Some(device(false, false, &[]))));
        assert!(
            text.contains("Device: sent at 2024-05-01T10:00:00Z (1 time), not applied yet\n"),
            "{text}"
        );
        let text = render_user_policy(&user_policy(None));
        assert!(text.ends_with("Device: none activated\n"), "{text}");
        let mut old = device(true, true, &[]);
        old.version = 2;
        let text = render_user_policy(&user_policy(Some(old)));
        assert!(
            text.contains(
                "— that is Basic Password Security v2, not the policy in force, compliant"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_diff_is_one_rule_to_a_line() {
        let d = PolicyDiffView {
            name: "Sales".into(),
            from: 1,
            to: 3,
            changes: vec![
                RuleChangeView {
                    rule: "password_min_length".into(),
                    from: Some("4".into()),
                    to: Some("8".into()),
                    text: "password_min_length: 4 -> 8".into(),
                },
                RuleChangeView {
                    rule: "disable_camera".into(),
                    from: None,
                    to: Some("true".into()),
                    text: String::new(),
                },
            ],
        };
        assert_eq!(
            render_diff(&d),
            "IT policy Sales, from version 1 to version 3:\n  password_min_length: 4 -> 8\n  + disable_camera = true\n"
        );
        let same = PolicyDiffView {
            changes: vec![],
            ..d
        };
        assert_eq!(
            render_diff(&same),
            "IT policy Sales: versions 1 and 3 set the same rules.\n"
        );
    }

    #[test]
    fn a_policy_shows_its_rules_and_versions() {
        let p = PolicyView {
            name: "Sales".into(),
            description: Some("For the sales team".into()),
            version: 2,
            updated_at: "2024-05-02T09:00:00Z".into(),
            rules: vec![
                PolicyRuleView {
                    name: "password_required".into(),
                    value: "true".into(),
                    is_default: false,
                },
                PolicyRuleView {
                    name: "password_min_length".into(),
                    value: "4".into(),
                    is_default: true,
                },
            ],
            versions: vec![
                PolicyVersionView {
                    version: 1,
                    created_at: "2024-05-01T09:00:00Z".into(),
                    created_by: Some("admin".into()),
                    note: None,
                },
                PolicyVersionView {
                    version: 2,
                    created_at: "2024-05-02T09:00:00Z".into(),
                    created_by: None,
                    note: Some("passwords for everyone".into()),
                },
            ],
            users: vec![],
            groups: vec!["Sales".into()],
        };
        assert_eq!(
            render_policy(&p),
            "IT policy    Sales\n\
             About        For the sales team\n\
             Version      2, made 2024-05-02T09:00:00Z\n\
             Assigned to  group Sales\n\
             Rules\n  \
             password_required    true\n  \
             password_min_length  4     (default)\n\
             Versions\n  \
             v1            2024-05-01T09:00:00Z  by admin\n  \
             v2 (current)  2024-05-02T09:00:00Z            passwords for everyone\n"
        );
    }

    #[test]
    fn presets_list_their_rules() {
        let p = PresetView {
            name: "Basic Password Security".into(),
            description: "A device password".into(),
            overrides: [("password_required".to_owned(), "true".to_owned())].into(),
        };
        assert_eq!(
            render_presets(&[p]),
            "Basic Password Security\n  A device password\n    password_required  true\n"
        );
    }
}
