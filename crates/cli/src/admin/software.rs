//! `bramble admin software …`: the application repository (packages uploaded), software
//! configurations (which applications must, may or must not be on a device), who gets which,
//! and the deployment jobs that bring devices in line.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bramble_server::admin::views::{
    ConfigAppEdit, JobView, NewSoftwareConfig, PackageView, SoftwareAssignment, SoftwareConfigEdit,
    SoftwareConfigView, UserSoftwareView,
};
use reqwest::Method;

use super::policy::source_text;
use super::{Body, Client, Target, aligned, assigned_text, encode, on_off, print_text};
use crate::output;

/// The largest package the repository takes.
const MAX_PACKAGE: u64 = 64 * 1024 * 1024;

#[derive(Debug, clap::Subcommand)]
pub enum SoftwareCmd {
    /// Add an application package to the repository, so configurations can name it.
    // its own --version, not bramble's
    #[command(disable_version_flag = true)]
    Upload {
        /// The package file (at most 64 MiB).
        file: PathBuf,
        /// The application's name.
        #[arg(long)]
        name: String,
        /// The package's version.
        #[arg(long)]
        version: String,
    },
    /// List the packages in the repository.
    Packages,
    /// Remove a package from the repository (the server refuses while a configuration names it).
    // its own VERSION, not bramble's
    #[command(disable_version_flag = true)]
    PackageDelete {
        /// The application's name.
        name: String,
        /// The package's version.
        version: String,
    },
    /// Software configurations: which applications must, may or must not be on a device.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// Assign a software configuration to a user or a group. A user's own configuration wins
    /// over their groups'.
    Assign {
        /// The configuration's name.
        config: String,
        #[command(flatten)]
        target: Target,
    },
    /// Remove the software configuration assigned to a user or a group.
    Unassign {
        #[command(flatten)]
        target: Target,
    },
    /// List the deployment jobs: what was sent to devices and what they did, newest first.
    Jobs {
        /// Only this user's jobs.
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// At most this many.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCmd {
    /// List the software configurations.
    List,
    /// Show a software configuration: its applications and who it is assigned to.
    Show {
        /// The configuration's name.
        name: String,
    },
    /// Make a software configuration (then add applications with `software config app`).
    Create {
        /// A name for it.
        name: String,
        /// Let applications the configuration does not list stay on the device (without it,
        /// they are removed).
        #[arg(long)]
        allow_unlisted: bool,
    },
    /// Delete a software configuration (the server refuses while it is assigned).
    Delete {
        /// The configuration's name.
        name: String,
    },
    /// Change a software configuration's settings.
    Set {
        /// The configuration's name.
        name: String,
        /// Let applications the configuration does not list stay on the device: on or off.
        #[arg(long, value_parser = on_off, value_name = "on|off", required = true)]
        allow_unlisted: Option<bool>,
    },
    /// Add an application to a configuration, or change how it is treated.
    // its own --version, not bramble's
    #[command(disable_version_flag = true)]
    App {
        /// The configuration's name.
        name: String,
        /// The application's name, as uploaded.
        app: String,
        /// What becomes of the application on the devices that get this configuration.
        #[arg(long)]
        disposition: Disposition,
        /// The package version to install (one in the repository; not needed for not-permitted).
        #[arg(long, value_name = "V")]
        version: Option<String>,
    },
    /// Take an application out of a configuration.
    RemoveApp {
        /// The configuration's name.
        name: String,
        /// The application's name.
        app: String,
    },
}

/// `--disposition`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Disposition {
    /// Installed on the device and kept there.
    Required,
    /// Available; the user may install it.
    Optional,
    /// Removed from the device and not allowed on it.
    NotPermitted,
}

impl Disposition {
    fn as_api(self) -> &'static str {
        match self {
            Disposition::Required => "required",
            Disposition::Optional => "optional",
            Disposition::NotPermitted => "not-permitted",
        }
    }
}

/// "812 bytes", "3.4 KiB", "12.0 MiB".
pub(super) fn size_text(bytes: u64) -> String {
    const KIB: u64 = 1024;
    #[allow(clippy::cast_precision_loss)]
    let f = bytes as f64;
    if bytes < KIB {
        format!("{bytes} bytes")
    } else if bytes < KIB * KIB {
        format!("{:.1} KiB", f / KIB as f64)
    } else {
        format!("{:.1} MiB", f / (KIB * KIB) as f64)
    }
}

/// "may stay" or "are removed".
fn unlisted_text(allow: bool) -> &'static str {
    if allow { "may stay" } else { "are removed" }
}

/// `software config show`.
pub(super) fn render_config(c: &SoftwareConfigView) -> String {
    let rows = vec![
        vec!["Software configuration".to_owned(), c.name.clone()],
        vec![
            "Unlisted applications".to_owned(),
            unlisted_text(c.allow_unlisted).to_owned(),
        ],
        vec!["Assigned to".to_owned(), assigned_text(&c.users, &c.groups)],
        vec!["Changed".to_owned(), c.updated_at.clone()],
    ];
    let mut out = aligned("", &rows);
    if c.apps.is_empty() {
        out.push_str("Applications: none yet\n");
    } else {
        out.push_str("Applications\n");
        let rows: Vec<Vec<String>> = c
            .apps
            .iter()
            .map(|a| {
                vec![
                    a.name.clone(),
                    a.version.clone().unwrap_or_else(|| "-".into()),
                    a.disposition.clone(),
                ]
            })
            .collect();
        out.push_str(&aligned("  ", &rows));
    }
    out
}

/// A job in a few lines, each starting with `indent`: its state (after `lead`), then what the
/// device did with each application.
fn render_job(j: &JobView, indent: &str, lead: &str) -> String {
    let mut out = format!(
        "{indent}{lead}job {}: {} at {}{}\n",
        j.id,
        j.state,
        j.updated_at,
        j.detail
            .as_ref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    );
    let rows: Vec<Vec<String>> = j
        .apps
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.version.clone(),
                match &a.detail {
                    Some(d) => format!("{}: {d}", a.state),
                    None => a.state.clone(),
                },
            ]
        })
        .collect();
    out.push_str(&aligned(&format!("{indent}  "), &rows));
    if !j.installed.is_empty() {
        out.push_str(&format!(
            "{indent}  on the device now: {}\n",
            j.installed.join(", ")
        ));
    }
    out
}

/// The "Software" section of `user show`.
pub(super) fn render_user_software(s: &UserSoftwareView) -> String {
    let mut out = format!("Software   {} ({})\n", s.config, source_text(&s.source));
    match &s.job {
        Some(j) => out.push_str(&render_job(j, "           ", "latest ")),
        None => out.push_str("           no deployment job yet\n"),
    }
    out
}

/// Reads a package, refusing one over [`MAX_PACKAGE`] before reading it.
fn read_package(file: &Path) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", file.display());
    }
    if meta.len() > MAX_PACKAGE {
        bail!(
            "{} is {}; the application repository takes packages of at most 64 MiB",
            file.display(),
            size_text(meta.len())
        );
    }
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

fn config_path(name: &str) -> String {
    format!("/software/configs/{}", encode(name))
}

async fn config(client: &Client, json: bool, command: ConfigCmd) -> Result<()> {
    match command {
        ConfigCmd::List => {
            let list: Vec<SoftwareConfigView> = client.get_all("/software/configs", None).await?;
            if json {
                return output::json(&list);
            }
            if list.is_empty() {
                println!(
                    "No software configurations yet. Make one with: bramble admin software config create NAME"
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| {
                    vec![
                        c.name.clone(),
                        c.apps.len().to_string(),
                        unlisted_text(c.allow_unlisted).to_owned(),
                        assigned_text(&c.users, &c.groups),
                        c.updated_at.clone(),
                    ]
                })
                .collect();
            output::table(
                &["NAME", "APPS", "UNLISTED APPS", "ASSIGNED TO", "CHANGED"],
                &rows,
            );
        }
        ConfigCmd::Show { name } => {
            let c: SoftwareConfigView = client.get(&config_path(&name)).await?;
            if json {
                return output::json(&c);
            }
            print_text(&render_config(&c))?;
        }
        ConfigCmd::Create {
            name,
            allow_unlisted,
        } => {
            let body = NewSoftwareConfig {
                name,
                allow_unlisted,
            };
            let c: SoftwareConfigView = client
                .with_body(Method::POST, "/software/configs", &body)
                .await?;
            if json {
                return output::json(&c);
            }
            println!("Made software configuration {}.", c.name);
            println!(
                "Next: bramble admin software config app {:?} APP --disposition required --version V",
                c.name
            );
        }
        ConfigCmd::Delete { name } => {
            client
                .no_answer::<()>(Method::DELETE, &config_path(&name), None)
                .await?;
            if json {
                return output::json(&serde_json::json!({ "deleted": name }));
            }
            println!("Deleted software configuration {name}.");
        }
        ConfigCmd::Set {
            name,
            allow_unlisted,
        } => {
            let c: SoftwareConfigView = client
                .with_body(
                    Method::PATCH,
                    &config_path(&name),
                    &SoftwareConfigEdit { allow_unlisted },
                )
                .await?;
            if json {
                return output::json(&c);
            }
            println!(
                "Changed software configuration {}: applications it does not list {}.",
                c.name,
                unlisted_text(c.allow_unlisted)
            );
        }
        ConfigCmd::App {
            name,
            app,
            disposition,
            version,
        } => {
            let body = ConfigAppEdit {
                version,
                disposition: disposition.as_api().to_owned(),
            };
            let c: SoftwareConfigView = client
                .with_body(
                    Method::PUT,
                    &format!("{}/apps/{}", config_path(&name), encode(&app)),
                    &body,
                )
                .await?;
            if json {
                return output::json(&c);
            }
            println!("Changed software configuration {}.", c.name);
            print_text(&render_config(&c))?;
        }
        ConfigCmd::RemoveApp { name, app } => {
            let c: SoftwareConfigView = client
                .call(
                    Method::DELETE,
                    &format!("{}/apps/{}", config_path(&name), encode(&app)),
                    None,
                )
                .await?
                .context("empty answer")?;
            if json {
                return output::json(&c);
            }
            println!("Took {app} out of software configuration {}.", c.name);
        }
    }
    Ok(())
}

pub(super) async fn run(client: &Client, json: bool, command: SoftwareCmd) -> Result<()> {
    match command {
        SoftwareCmd::Upload {
            file,
            name,
            version,
        } => {
            let bytes = read_package(&file)?;
            let p: PackageView = client
                .send(
                    Method::POST,
                    &format!(
                        "/software/packages?name={}&version={}",
                        encode(&name),
                        encode(&version)
                    ),
                    Body::Bytes(bytes),
                )
                .await?
                .context("empty answer")?;
            if json {
                return output::json(&p);
            }
            println!(
                "Uploaded {} {} ({}, SHA-256 {}).",
                p.name,
                p.version,
                size_text(p.size),
                p.sha256
            );
        }
        SoftwareCmd::Packages => {
            let list: Vec<PackageView> = client.get_all("/software/packages", None).await?;
            if json {
                return output::json(&list);
            }
            if list.is_empty() {
                println!(
                    "The application repository is empty. Add a package with: bramble admin software upload FILE --name NAME --version V"
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.version.clone(),
                        size_text(p.size),
                        p.uploaded_at.clone(),
                        p.sha256.clone(),
                    ]
                })
                .collect();
            output::table(&["NAME", "VERSION", "SIZE", "UPLOADED", "SHA-256"], &rows);
        }
        SoftwareCmd::PackageDelete { name, version } => {
            client
                .no_answer::<()>(
                    Method::DELETE,
                    &format!("/software/packages/{}/{}", encode(&name), encode(&version)),
                    None,
                )
                .await?;
            if json {
                return output::json(
                    &serde_json::json!({ "deleted": { "name": name, "version": version } }),
                );
            }
            println!("Removed {name} {version} from the application repository.");
        }
        SoftwareCmd::Config { command } => config(client, json, command).await?,
        SoftwareCmd::Assign { config, target } => {
            let body = SoftwareAssignment {
                config: Some(config.clone()),
            };
            client
                .no_answer(Method::PUT, &target.path("software"), Some(&body))
                .await?;
            if json {
                let mut v = target.json();
                v["config"] = config.into();
                return output::json(&v);
            }
            match &target.user {
                Some(u) => println!(
                    "Assigned software configuration {config} to {u}; it wins over their groups'."
                ),
                None => println!(
                    "Assigned software configuration {config} to {}; its members without one of their own get it.",
                    target.text()
                ),
            }
        }
        SoftwareCmd::Unassign { target } => {
            client
                .no_answer(
                    Method::PUT,
                    &target.path("software"),
                    Some(&SoftwareAssignment { config: None }),
                )
                .await?;
            if json {
                let mut v = target.json();
                v["config"] = serde_json::Value::Null;
                return output::json(&v);
            }
            match &target.user {
                Some(u) => println!(
                    "{u} has no software configuration of their own now; their groups' applies, if they have one."
                ),
                None => println!(
                    "{} has no software configuration now; its members keep their own or get another group's.",
                    target.text()
                ),
            }
        }
        SoftwareCmd::Jobs { user, limit } => {
            let mut query = Vec::new();
            if let Some(u) = &user {
                query.push(format!("user={}", encode(u)));
            }
            let path = if query.is_empty() {
                "/software/jobs".to_owned()
            } else {
                format!("/software/jobs?{}", query.join("&"))
            };
            let list: Vec<JobView> = client
                .get_all(&path, Some(limit.map_or(100, |n| n as usize)))
                .await?;
            if json {
                return output::json(&list);
            }
            if list.is_empty() {
                println!(
                    "No deployment jobs{}.",
                    user.map(|u| format!(" for {u}")).unwrap_or_default()
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|j| {
                    vec![
                        j.id.to_string(),
                        j.user.clone(),
                        j.pin.clone(),
                        j.config.clone(),
                        j.state.clone(),
                        j.updated_at.clone(),
                        j.detail.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(
                &["ID", "USER", "PIN", "CONFIG", "STATE", "CHANGED", "DETAIL"],
                &rows,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bramble_server::admin::views::{ConfigAppView, JobAppView};

    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size_text(812), "812 bytes");
        assert_eq!(size_text(3 * 1024 + 512), "3.5 KiB");
        assert_eq!(size_text(MAX_PACKAGE), "64.0 MiB");
    }

    #[test]
    fn a_package_over_64_mib_is_refused_before_reading() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let big = dir.path().join("big.cod");
        let f = std::fs::File::create(&big).expect("a file");
        f.set_len(MAX_PACKAGE + 1).expect("a sparse file");
        let e = read_package(&big).expect_err("too big").to_string();
        assert!(
            e.contains("the application repository takes packages of at most 64 MiB"),
            "{e}"
        );
        let small = dir.path().join("small.cod");
        std::fs::write(&small, b"app").expect("a file");
        assert_eq!(read_package(&small).expect("a small file"), b"app");
        let e = read_package(&dir.path().join("none.cod")).expect_err("no file");
        assert!(e.to_string().starts_with("cannot read"), "{e}");
    }

    #[test]
    fn a_config_lists_its_apps() {
        let c = SoftwareConfigView {
            name: "Field".into(),
            allow_unlisted: false,
            apps: vec![
                ConfigAppView {
                    name: "Maps".into(),
                    version: Some("2.1".into()),
                    disposition: "required".into(),
                },
                ConfigAppView {
                    name: "Games".into(),
                    version: None,
                    disposition: "not-permitted".into(),
                },
            ],
            users: vec!["alice@example.com".into()],
            groups: vec![],
            updated_at: "2024-05-01T09:00:00Z".into(),
        };
        assert_eq!(
            render_config(&c),
            "Software configuration  Field\n\
             Unlisted applications   are removed\n\
             Assigned to             user alice@example.com\n\
             Changed                 2024-05-01T09:00:00Z\n\
             Applications\n  \
             Maps   2.1  required\n  \
             Games  -    not-permitted\n"
        );
    }

    #[test]
    fn a_users_software_shows_the_latest_job() {
        let s = UserSoftwareView {
            config: "Field".into(),
            source: "group Sales".into(),
            job: Some(JobView {
                id: 7,
                user: "alice@example.com".into(),
                pin: "2a3b4c5d".into(),
                config: "Field".into(),
                state: "done".into(),
                detail: None,
                created_at: "2024-05-01T09:00:00Z".into(),
                updated_at: "2024-05-01T09:01:00Z".into(),
                apps: vec![
                    JobAppView {
                        name: "Maps".into(),
                        version: "2.1".into(),
                        state: "installed".into(),
                        detail: None,
                    },
                    JobAppView {
                        name: "Notes".into(),
                        version: "1.0".into(),
                        state: "failed".into(),
                        detail: Some("not enough space".into()),
                    },
                ],
                installed: vec!["Maps 2.1".into()],
            }),
        };
        assert_eq!(
            render_user_software(&s),
            "Software   Field (from group Sales)\n\
             \x20          latest job 7: done at 2024-05-01T09:01:00Z\n\
             \x20            Maps   2.1  installed\n\
             \x20            Notes  1.0  failed: not enough space\n\
             \x20            on the device now: Maps 2.1\n"
        );
    }
}
