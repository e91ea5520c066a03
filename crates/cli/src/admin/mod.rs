//! `bramble admin`: a client of the administration API. On the server's machine it finds
//! the API's address and token in the data directory (`admin.json`), so no flags are needed.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bramble_server::admin::{ClientFile, UserView, pages};
use bramble_store::{FilterAction, FilterConditions};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::output;

mod access;
mod command;
mod directory;
mod group;
mod policy;
mod software;
mod sync;

/// Flags of `bramble admin`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server's data directory, where admin.json tells the API's address and token
    /// (default ./bramble-data).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// The API's base URL (instead of --data).
    #[arg(long, global = true, requires = "token", env = "BRAMBLE_ADMIN_URL")]
    url: Option<String>,
    /// The API's bearer token (instead of --data).
    #[arg(
        long,
        global = true,
        env = "BRAMBLE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print JSON for programs.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// The server's state: SRP id, relay link, database, counts.
    Status,
    /// Users and their devices.
    User {
        #[command(subcommand)]
        command: UserCmd,
    },
    /// Push-mail filters: the global ones (checked first) and each user's own.
    Filter {
        #[command(subcommand)]
        command: FilterCmd,
    },
    /// IT policies: the rules a device must follow (device password, camera, Bluetooth,
    /// applications, …), their versions, and which users and groups get which.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCmd,
    },
    /// The company directory (LDAP): find people, add them as users, keep names in step
    /// (BES: the MailStore service).
    Directory {
        #[command(subcommand)]
        command: directory::DirectoryCmd,
    },
    /// Groups of users, to assign an IT policy or a software configuration to many at once.
    Group {
        #[command(subcommand)]
        command: group::GroupCmd,
    },
    /// Administrator accounts: who may log in to the console and use the API, with which
    /// roles.
    Account {
        #[command(subcommand)]
        command: access::AccountCmd,
    },
    /// Roles: BES 5's six presets (Security Administrator, …) and custom ones made of
    /// permissions.
    Role {
        #[command(subcommand)]
        command: access::RoleCmd,
    },
    /// API tokens for programs that call the administration API.
    Token {
        #[command(subcommand)]
        command: access::TokenCmd,
    },
    /// The audit log: every change and command, who made it, from where, and the result.
    Audit(access::AuditArgs),
    /// IT admin commands to a user's device: lock, wipe, remove the organization's data,
    /// regenerate the encryption key, resend the IT policy or the service books.
    Command {
        #[command(subcommand)]
        command: command::CommandCmd,
    },
    /// Applications: the repository of packages, software configurations (what must, may
    /// or must not be on a device), who gets which, and the deployment jobs.
    Software {
        #[command(subcommand)]
        command: software::SoftwareCmd,
    },
    /// Organizer data (calendar, contacts, tasks, memos) against the CalDAV/CardDAV server:
    /// how each database is synchronized for a user or a group, problems, wireless backup.
    Sync {
        #[command(subcommand)]
        command: sync::SyncCmd,
    },
}

/// `--user EMAIL | --group GROUP`: who an assignment is for.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Target {
    /// One user, by email address (a user's own assignment wins over their groups').
    #[arg(long, value_name = "EMAIL")]
    user: Option<String>,
    /// A group: every member without an assignment of their own.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
}

impl Target {
    /// `/users/{email}/{what}` or `/groups/{name}/{what}`.
    fn path(&self, what: &str) -> String {
        match (&self.user, &self.group) {
            (Some(u), _) => format!("/users/{}/{what}", encode(u)),
            (None, Some(g)) => format!("/groups/{}/{what}", encode(g)),
            // clap requires one of the two
            (None, None) => unreachable!("--user or --group is required"),
        }
    }

    /// "user alice@example.com" or "group Sales".
    fn text(&self) -> String {
        match (&self.user, &self.group) {
            (Some(u), _) => format!("user {u}"),
            (None, Some(g)) => format!("group {g}"),
            (None, None) => String::new(),
        }
    }

    /// `{"user": …}` or `{"group": …}`, for --json.
    fn json(&self) -> serde_json::Value {
        match (&self.user, &self.group) {
            (Some(u), _) => serde_json::json!({ "user": u }),
            (None, g) => serde_json::json!({ "group": g }),
        }
    }
}

/// Rows as text with their columns padded to fit, every line starting with `indent`; the
/// last column is not padded and trailing spaces are cut.
fn aligned(indent: &str, rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = indent.to_owned();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// "alice@example.com, bob@example.com; groups Sales" for a thing's assignments, or "nobody".
fn assigned_text(users: &[String], groups: &[String]) -> String {
    let mut parts = Vec::new();
    if !users.is_empty() {
        parts.push(format!(
            "{} {}",
            if users.len() == 1 { "user" } else { "users" },
            users.join(", ")
        ));
    }
    if !groups.is_empty() {
        parts.push(format!(
            "{} {}",
            if groups.len() == 1 { "group" } else { "groups" },
            groups.join(", ")
        ));
    }
    if parts.is_empty() {
        "nobody".to_owned()
    } else {
        parts.join("; ")
    }
}

/// Prints text that already ends in a newline, quietly when the reader went away.
fn print_text(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
enum UserCmd {
    /// Add a user by email address.
    Add {
        email: String,
        /// The name to show.
        #[arg(long)]
        name: Option<String>,
    },
    /// List users with their status.
    List,
    /// Show one user: status, its timeline, the device.
    Show { email: String },
    /// Change a user's address (their device, mail and settings stay theirs; the phone gets
    /// its service books again) or display name.
    Edit {
        email: String,
        /// The new address.
        #[arg(long = "email", value_name = "NEW")]
        new_email: Option<String>,
        /// The new name to show ("" removes it).
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete a user and their device.
    Delete { email: String },
    /// Set the user's own mailbox password, for a server without a service account
    /// ([server.mail] per_user = true). It is stored encrypted and never shown again.
    MailPassword {
        email: String,
        /// The password of the user's mailbox on the mail server.
        #[arg(long)]
        password: String,
    },
    /// Show or change the user's push-mail settings: mail pushed to the phone, a copy of mail
    /// sent from the phone in Sent, read/flags/deletes/moves reconciled both ways.
    MailSettings {
        email: String,
        /// Push new mail to the phone: on or off.
        #[arg(long, value_parser = on_off)]
        push: Option<bool>,
        /// Keep a copy of mail sent from the phone in the Sent folder: on or off.
        #[arg(long, value_parser = on_off)]
        save_sent: Option<bool>,
        /// Reconcile read/unread, flags, deletes and moves between phone and mailbox: on or off.
        #[arg(long, value_parser = on_off)]
        reconcile: Option<bool>,
    },
    /// Set the one-time activation password the user types on the phone (only a record of
    /// it is stored; a generated one is printed once).
    ActivationPassword {
        email: String,
        /// The password to set (6 to 128 characters). Visible to other users of this machine
        /// in the process list: prefer --generate.
        #[arg(
            long,
            conflicts_with = "generate",
            required_unless_present = "generate"
        )]
        password: Option<String>,
        /// Have the server make one and print it.
        #[arg(long)]
        generate: bool,
        /// How long it stays valid (default 48h, at most 30d).
        #[arg(long)]
        expires: Option<String>,
        /// Wrong passwords allowed before it is void (default 5).
        #[arg(long)]
        max_attempts: Option<u32>,
    },
}

#[derive(Debug, clap::Subcommand)]
enum FilterCmd {
    /// Add a filter: a global one, or a user's own with --user.
    ///
    /// The global filters are checked first, then the user's own; the first enabled filter
    /// that matches a new message decides what becomes of it, and a message no filter matches
    /// is forwarded as usual.
    Add {
        /// A name for it, unique among the filters of its scope.
        name: String,
        /// Make it a filter of this user instead of a global one.
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        #[command(flatten)]
        conditions: ConditionArgs,
        /// What to do with a matching message.
        #[arg(long)]
        action: ActionArg,
        /// Put it at this place (from 1) instead of last; the filters from there on move down.
        #[arg(long, value_name = "N")]
        position: Option<u32>,
        /// Add it switched off.
        #[arg(long)]
        disabled: bool,
    },
    /// List the global filters, or a user's own with --user, in the order they are checked.
    List {
        /// List this user's filters instead of the global ones.
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
    },
    /// Show one filter.
    Show {
        /// The filter's id, as `filter list` shows it.
        id: i64,
    },
    /// Change a filter's name, conditions or action, or switch it on or off.
    ///
    /// What is not given stays as it is. An empty pattern (--from '') removes that condition;
    /// --importance any removes the importance condition.
    #[command(group(
        clap::ArgGroup::new("change")
            .required(true)
            .multiple(true)
            .args(["name", "from", "to", "cc", "subject", "importance", "action", "enable", "disable"])
    ))]
    Edit {
        /// The filter's id, as `filter list` shows it.
        id: i64,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        conditions: ConditionArgs,
        /// A new action.
        #[arg(long)]
        action: Option<ActionArg>,
        /// Switch it on.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Switch it off (it is kept, and skipped).
        #[arg(long)]
        disable: bool,
    },
    /// Move a filter to another place (from 1) among the filters of its scope.
    Move {
        /// The filter's id, as `filter list` shows it.
        id: i64,
        /// The new place, from 1; past the end means last.
        position: u32,
    },
    /// Remove a filter; the filters after it move up.
    Remove {
        /// The filter's id, as `filter list` shows it.
        id: i64,
    },
}

/// A filter's conditions. A pattern is a case-insensitive substring in which `*` stands for
/// any run of characters and `?` for one (at most 256 bytes); every condition given must match.
#[derive(Debug, clap::Args)]
struct ConditionArgs {
    /// Match the sender (its name and address), e.g. '*@example.com'.
    #[arg(long, value_name = "PATTERN")]
    from: Option<String>,
    /// Match one of the To addresses.
    #[arg(long, value_name = "PATTERN")]
    to: Option<String>,
    /// Match one of the Cc addresses.
    #[arg(long, value_name = "PATTERN")]
    cc: Option<String>,
    /// Match the subject.
    #[arg(long, value_name = "PATTERN")]
    subject: Option<String>,
    /// Match only messages of this importance (any: every importance).
    #[arg(long)]
    importance: Option<ImportanceArg>,
}

impl ConditionArgs {
    /// The conditions as JSON: for `add`, only those given; for `edit`, those given, with an
    /// empty pattern (or importance `any`) as null, which removes the condition.
    fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for (key, value) in [
            ("from", &self.from),
            ("to", &self.to),
            ("cc", &self.cc),
            ("subject", &self.subject),
        ] {
            if let Some(v) = value {
                let v = if v.is_empty() {
                    serde_json::Value::Null
                } else {
                    v.as_str().into()
                };
                out.insert(key.to_owned(), v);
            }
        }
        if let Some(i) = self.importance {
            out.insert("importance".to_owned(), i.as_json());
        }
        out
    }
}

/// `--action`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ActionArg {
    /// Forward it as usual.
    Forward,
    /// Forward it with priority.
    #[value(alias = "forward-with-priority")]
    Priority,
    /// Do not forward it; it stays in the mailbox.
    #[value(alias = "do-not-forward")]
    Drop,
}

impl ActionArg {
    fn as_api(self) -> &'static str {
        match self {
            ActionArg::Forward => FilterAction::Forward.as_str(),
            ActionArg::Priority => FilterAction::ForwardWithPriority.as_str(),
            ActionArg::Drop => FilterAction::DoNotForward.as_str(),
        }
    }
}

/// `--importance`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ImportanceArg {
    High,
    Normal,
    Low,
    /// No importance condition.
    Any,
}

impl ImportanceArg {
    fn as_json(self) -> serde_json::Value {
        match self {
            ImportanceArg::High => "high".into(),
            ImportanceArg::Normal => "normal".into(),
            ImportanceArg::Low => "low".into(),
            ImportanceArg::Any => serde_json::Value::Null,
        }
    }
}

/// A push-mail filter as the API shows it (`GET /filters/{id}`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct FilterView {
    /// The filter's number.
    pub id: i64,
    /// "global" or "user".
    pub scope: String,
    /// The user's address, for a user's filter.
    pub user: Option<String>,
    /// Its place in its scope, from 1.
    pub position: u32,
    /// Its name.
    pub name: String,
    /// Whether it is in force.
    pub enabled: bool,
    /// Its conditions.
    pub conditions: FilterConditions,
    /// Its action.
    pub action: FilterAction,
    /// When it was added (RFC 3339).
    pub created_at: String,
    /// When it was last changed (RFC 3339).
    pub updated_at: String,
}

impl FilterView {
    /// "the global filters" or "the filters of alice@example.com".
    fn scope_text(&self) -> String {
        match &self.user {
            Some(u) => format!("the filters of {u}"),
            None => "the global filters".to_owned(),
        }
    }
}

/// The conditions in one line: `from *@x.com, importance high`, or `every message`.
fn conditions_text(c: &FilterConditions) -> String {
    let parts: Vec<String> = [
        ("from", &c.from),
        ("to", &c.to),
        ("cc", &c.cc),
        ("subject", &c.subject),
        ("importance", &c.importance),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
    .collect();
    if parts.is_empty() {
        "every message".to_owned()
    } else {
        parts.join(", ")
    }
}

fn print_filter(f: &FilterView) {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("Filter      {} \"{}\"", f.id, f.name);
    println!(
        "Scope       {}",
        f.user
            .as_deref()
            .unwrap_or("global (checked before every user's own)")
    );
    println!("Position    {}", f.position);
    println!("Enabled     {}", if f.enabled { "yes" } else { "no" });
    println!("Action      {}", f.action);
    println!("From        {}", or_dash(&f.conditions.from));
    println!("To          {}", or_dash(&f.conditions.to));
    println!("Cc          {}", or_dash(&f.conditions.cc));
    println!("Subject     {}", or_dash(&f.conditions.subject));
    println!(
        "Importance  {}",
        f.conditions.importance.as_deref().unwrap_or("any")
    );
    println!("Added       {}", f.created_at);
    println!("Changed     {}", f.updated_at);
}

/// What a request carries.
enum Body {
    None,
    Json(serde_json::Value),
    Bytes(Vec<u8>),
}

/// A connection to the administration API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for `url` with `token`.
    pub fn new(url: &str, token: &str) -> Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("cannot make an HTTP client")?;
        Ok(Client {
            base: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        })
    }

    /// A client from a data directory's `admin.json`.
    pub fn from_data_dir(dir: &std::path::Path) -> Result<Client> {
        let path = bramble_server::admin::client_file_path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "no running server found in {} ({}: {e}); start one with `bramble serve --data {}`, or give --url and --token",
                dir.display(),
                path.display(),
                dir.display()
            )
        })?;
        let file: ClientFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged", path.display()))?;
        Client::new(&file.url, &file.token)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<T>> {
        self.send(method, path, body.map_or(Body::None, Body::Json))
            .await
    }

    /// `call` with any kind of body: JSON, or raw bytes (a package upload).
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<Option<T>> {
        let resp = self.request(method, path, body).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = resp.bytes().await.context("reading the server's answer")?;
        Ok(Some(serde_json::from_slice(&bytes).context(
            "the server's answer is not what this client expects",
        )?))
    }

    /// Sends a request; the answer when it is a success, else the server's words.
    async fn request(&self, method: Method, path: &str, body: Body) -> Result<reqwest::Response> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        match body {
            Body::None => {}
            Body::Json(b) => req = req.json(&b),
            Body::Bytes(b) => {
                // an upload may take longer than the usual 30 s on a slow link
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .timeout(std::time::Duration::from_secs(600))
                    .body(b);
            }
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow::anyhow!(
                    "the administration API at {} does not answer: is `bramble serve` running?",
                    self.base
                )
            } else {
                anyhow::anyhow!("the request to {url} failed: {e}")
            }
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            bail!(
                "the server at {} refused the administration token; check --token (or the admin-token \
                 file in the server's data directory)",
                self.base
            );
        }
        if !status.is_success() {
            let bytes = resp.bytes().await.context("reading the server's answer")?;
            let msg = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("the server answered {status}"));
            bail!("{msg}");
        }
        Ok(resp)
    }

    /// Every item of a paged list (`GET path`), following `Link: <…>; rel="next"`; at most
    /// `max` when given.
    async fn get_all<T: DeserializeOwned>(&self, path: &str, max: Option<usize>) -> Result<Vec<T>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let first = match max {
            Some(n) if n < pages::MAX_LIMIT as usize => format!("{path}{sep}limit={n}"),
            _ => format!("{path}{sep}limit={}", pages::MAX_LIMIT),
        };
        let mut next = Some(first);
        let mut out = Vec::new();
        while let Some(p) = next.take() {
            let resp = self.request(Method::GET, &p, Body::None).await?;
            next = next_link(resp.headers());
            let bytes = resp.bytes().await.context("reading the server's answer")?;
            let page: Vec<T> = serde_json::from_slice(&bytes)
                .context("the server's answer is not what this client expects")?;
            let empty = page.is_empty();
            out.extend(page);
            if max.is_some_and(|n| out.len() >= n) {
                out.truncate(max.unwrap_or(usize::MAX));
                break;
            }
            if empty {
                break;
            }
        }
        Ok(out)
    }

    /// `GET path`, an answer expected.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, None)
            .await?
            .context("empty answer")
    }

    /// `METHOD path` with a JSON body, an answer expected.
    async fn with_body<T: DeserializeOwned, B: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(method, path, Some(serde_json::to_value(body)?))
            .await?
            .context("empty answer")
    }

    /// `METHOD path` (with a JSON body, if any) where no answer is expected (204).
    async fn no_answer<B: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<()> {
        let body = body.map(serde_json::to_value).transpose()?;
        self.call::<serde_json::Value>(method, path, body).await?;
        Ok(())
    }

    /// `POST /users`.
    pub async fn add_user(&self, email: &str, name: Option<&str>) -> Result<UserView> {
        let body = serde_json::json!({ "email": email, "display_name": name });
        self.call(Method::POST, "/users", Some(body))
            .await?
            .context("empty answer")
    }

    /// `GET /users`, every page.
    pub async fn list_users(&self) -> Result<Vec<UserView>> {
        self.get_all("/users", None).await
    }

    /// `GET /users/{email}`.
    pub async fn user(&self, email: &str) -> Result<UserView> {
        self.call(Method::GET, &format!("/users/{}", encode(email)), None)
            .await?
            .context("empty answer")
    }

    /// `PATCH /users/{email}`: a new address, a new display name ("" removes it).
    pub async fn edit_user(
        &self,
        email: &str,
        new_email: Option<&str>,
        name: Option<&str>,
    ) -> Result<UserView> {
        let mut body = serde_json::json!({});
        if let Some(e) = new_email {
            body["email"] = e.into();
        }
        if let Some(n) = name {
            body["display_name"] = if n.is_empty() {
                serde_json::Value::Null
            } else {
                n.into()
            };
        }
        self.call(
            Method::PATCH,
            &format!("/users/{}", encode(email)),
            Some(body),
        )
        .await?
        .context("empty answer")
    }

    /// `DELETE /users/{email}`.
    pub async fn delete_user(&self, email: &str) -> Result<()> {
        self.call::<serde_json::Value>(Method::DELETE, &format!("/users/{}", encode(email)), None)
            .await?;
        Ok(())
    }

    /// `POST /users/{email}/activation-password`.
    pub async fn set_activation_password(
        &self,
        email: &str,
        password: Option<&str>,
        expires: Option<&str>,
        max_attempts: Option<u32>,
    ) -> Result<bramble_server::admin::ActivationPasswordView> {
        let mut body = serde_json::json!({ "generate": password.is_none() });
        if let Some(p) = password {
            body["password"] = p.into();
        }
        if let Some(e) = expires {
            body["expires"] = e.into();
        }
        if let Some(m) = max_attempts {
            body["max_attempts"] = m.into();
        }
        self.call(
            Method::POST,
            &format!("/users/{}/activation-password", encode(email)),
            Some(body),
        )
        .await?
        .context("empty answer")
    }

    /// `PUT /users/{email}/mail-password`.
    /// `GET /users/{email}/mail-settings`.
    pub async fn mail_settings(&self, email: &str) -> Result<bramble_store::MailSettings> {
        self.call(
            Method::GET,
            &format!("/users/{}/mail-settings", encode(email)),
            None,
        )
        .await?
        .context("empty answer")
    }

    /// `PATCH /users/{email}/mail-settings`.
    pub async fn edit_mail_settings(
        &self,
        email: &str,
        change: serde_json::Value,
    ) -> Result<bramble_store::MailSettings> {
        self.call(
            Method::PATCH,
            &format!("/users/{}/mail-settings", encode(email)),
            Some(change),
        )
        .await?
        .context("empty answer")
    }

    pub async fn set_mail_password(&self, email: &str, password: &str) -> Result<()> {
        self.call::<serde_json::Value>(
            Method::PUT,
            &format!("/users/{}/mail-password", encode(email)),
            Some(serde_json::json!({ "password": password })),
        )
        .await?;
        Ok(())
    }

    /// `GET /filters`, or `GET /users/{email}/filters`.
    pub async fn list_filters(&self, user: Option<&str>) -> Result<Vec<FilterView>> {
        self.get_all(&filters_path(user), None).await
    }

    /// `POST /filters`, or `POST /users/{email}/filters`.
    pub async fn add_filter(
        &self,
        user: Option<&str>,
        body: serde_json::Value,
    ) -> Result<FilterView> {
        self.call(Method::POST, &filters_path(user), Some(body))
            .await?
            .context("empty answer")
    }

    /// `GET /filters/{id}`.
    pub async fn filter(&self, id: i64) -> Result<FilterView> {
        self.call(Method::GET, &format!("/filters/{id}"), None)
            .await?
            .context("empty answer")
    }

    /// `PATCH /filters/{id}`.
    pub async fn edit_filter(&self, id: i64, body: serde_json::Value) -> Result<FilterView> {
        self.call(Method::PATCH, &format!("/filters/{id}"), Some(body))
            .await?
            .context("empty answer")
    }

    /// `POST /filters/{id}/move`.
    pub async fn move_filter(&self, id: i64, position: u32) -> Result<FilterView> {
        self.call(
            Method::POST,
            &format!("/filters/{id}/move"),
            Some(serde_json::json!({ "position": position })),
        )
        .await?
        .context("empty answer")
    }

    /// `DELETE /filters/{id}`.
    pub async fn remove_filter(&self, id: i64) -> Result<()> {
        self.call::<serde_json::Value>(Method::DELETE, &format!("/filters/{id}"), None)
            .await?;
        Ok(())
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<serde_json::Value> {
        self.call(Method::GET, "/status", None)
            .await?
            .context("empty answer")
    }
}

/// The API path of a scope's filters.
/// The next page's path (under `/api/v1`) from a `Link` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.split(';').any(|p| p.trim() == "rel=\"next\"") {
            return None;
        }
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        target.strip_prefix("/api/v1").map(str::to_owned)
    })
}

fn filters_path(user: Option<&str>) -> String {
    match user {
        Some(u) => format!("/users/{}/filters", encode(u)),
        None => "/filters".to_owned(),
    }
}

async fn filter(client: &Client, json: bool, command: FilterCmd) -> Result<()> {
    match command {
        FilterCmd::Add {
            name,
            user,
            conditions,
            action,
            position,
            disabled,
        } => {
            let mut body = serde_json::json!({
                "name": name,
                "conditions": conditions.to_json(),
                "action": action.as_api(),
                "enabled": !disabled,
            });
            if let Some(p) = position {
                body["position"] = p.into();
            }
            let f = client.add_filter(user.as_deref(), body).await?;
            if json {
                return output::json(&f);
            }
            println!(
                "Added filter {} \"{}\" at position {} of {}.",
                f.id,
                f.name,
                f.position,
                f.scope_text()
            );
            print_filter(&f);
        }
        FilterCmd::List { user } => {
            let list = client.list_filters(user.as_deref()).await?;
            if json {
                return output::json(&list);
            }
            if list.is_empty() {
                match &user {
                    Some(u) => println!(
                        "{u} has no filters of their own. Add one with: bramble admin filter add NAME --user {u} --action forward|priority|drop [--from PATTERN …]"
                    ),
                    None => println!(
                        "No global filters. Add one with: bramble admin filter add NAME --action forward|priority|drop [--from PATTERN …]"
                    ),
                }
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|f| {
                    vec![
                        f.id.to_string(),
                        f.position.to_string(),
                        f.name.clone(),
                        if f.enabled { "yes" } else { "no" }.to_owned(),
                        f.action.to_string(),
                        conditions_text(&f.conditions),
                    ]
                })
                .collect();
            output::table(
                &["ID", "POS", "NAME", "ENABLED", "ACTION", "CONDITIONS"],
                &rows,
            );
        }
        FilterCmd::Show { id } => {
            let f = client.filter(id).await?;
            if json {
                return output::json(&f);
            }
            print_filter(&f);
        }
        FilterCmd::Edit {
            id,
            name,
            conditions,
            action,
            enable,
            disable,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(n) = name {
                body.insert("name".to_owned(), n.into());
            }
            let c = conditions.to_json();
            if !c.is_empty() {
                body.insert("conditions".to_owned(), c.into());
            }
            if let Some(a) = action {
                body.insert("action".to_owned(), a.as_api().into());
            }
            if enable || disable {
                body.insert("enabled".to_owned(), enable.into());
            }
            let f = client.edit_filter(id, body.into()).await?;
            if json {
                return output::json(&f);
            }
            println!("Changed filter {} \"{}\".", f.id, f.name);
            print_filter(&f);
        }
        FilterCmd::Move { id, position } => {
            let f = client.move_filter(id, position).await?;
            if json {
                return output::json(&f);
            }
            println!(
                "Filter {} \"{}\" is now at position {} of {}.",
                f.id,
                f.name,
                f.position,
                f.scope_text()
            );
        }
        FilterCmd::Remove { id } => {
            client.remove_filter(id).await?;
            if json {
                return output::json(&serde_json::json!({ "removed": id }));
            }
            println!("Removed filter {id}.");
        }
    }
    Ok(())
}

/// Percent-encodes a path segment.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn run(args: Args) -> Result<()> {
    crate::init_logging("warn");
    let client = match (&args.url, &args.token) {
        (Some(url), Some(token)) => Client::new(url, token)?,
        (None, Some(_)) => bail!("--token needs --url"),
        _ => Client::from_data_dir(&args.data.clone().unwrap_or_else(crate::default_data_dir))?,
    };
    match args.command {
        Cmd::Status => {
            let s = client.status().await?;
            if args.json {
                return output::json(&s);
            }
            println!("SRP id     {}", s["srp_id"].as_str().unwrap_or("-"));
            let relay = match s["relay"]["state"].as_str() {
                Some("up") => "connected".to_owned(),
                Some("down") => format!(
                    "not connected: {}",
                    s["relay"]["reason"].as_str().unwrap_or("")
                ),
                Some(other) => other.to_owned(),
                None => "-".to_owned(),
            };
            println!("relay      {relay}");
            println!("database   {}", s["database"].as_str().unwrap_or("-"));
            println!("users      {}", s["users"]);
            println!("devices    {}", s["devices"]);
            let m = &s["mail"];
            println!(
                "mail       forwarded {}, delivered {}, resent {}, filtered {}, expired {}; from devices: sent {}, failed {}",
                m["forwarded"],
                m["delivered"],
                m["resent"],
                m["filtered"],
                m["expired"],
                m["sent"],
                m["send_failed"]
            );
        }
        Cmd::Filter { command } => filter(&client, args.json, command).await?,
        Cmd::Policy { command } => policy::run(&client, args.json, command).await?,
        Cmd::Group { command } => group::run(&client, args.json, command).await?,
        Cmd::Directory { command } => directory::run(&client, args.json, command).await?,
        Cmd::Account { command } => access::account(&client, args.json, command).await?,
        Cmd::Role { command } => access::role(&client, args.json, command).await?,
        Cmd::Token { command } => access::token(&client, args.json, command).await?,
        Cmd::Audit(a) => access::audit(&client, args.json, a).await?,
        Cmd::Command { command } => command::run(&client, args.json, command).await?,
        Cmd::Software { command } => software::run(&client, args.json, command).await?,
        Cmd::Sync { command } => sync::run(&client, args.json, command).await?,
        Cmd::User { command } => match command {
            UserCmd::Add { email, name } => {
                let u = client.add_user(&email, name.as_deref()).await?;
                if args.json {
                    return output::json(&u);
                }
                println!("Added {} (status: {}).", u.email, u.status);
                println!(
                    "Next: bramble admin user activation-password {} --generate",
                    u.email
                );
            }
            UserCmd::List => {
                let users = client.list_users().await?;
                if args.json {
                    return output::json(&users);
                }
                if users.is_empty() {
                    println!("No users yet. Add one with: bramble admin user add EMAIL");
                    return Ok(());
                }
                let rows: Vec<Vec<String>> = users
                    .iter()
                    .map(|u| {
                        vec![
                            u.email.clone(),
                            u.display_name.clone().unwrap_or_default(),
                            u.status.clone(),
                            u.device.as_ref().map_or("-".into(), |d| d.pin.clone()),
                            u.device
                                .as_ref()
                                .and_then(|d| d.last_seen.clone())
                                .unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                output::table(&["EMAIL", "NAME", "STATUS", "PIN", "LAST SEEN"], &rows);
            }
            UserCmd::Show { email } => {
                let u = client.user(&email).await?;
                if args.json {
                    return output::json(&u);
                }
                println!("User       {}", u.email);
                if let Some(n) = &u.display_name {
                    println!("Name       {n}");
                }
                println!(
                    "Status     {}{}",
                    u.status,
                    u.status_reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                );
                println!("Since      {}", u.status_at);
                println!(
                    "Activation password  {}",
                    if u.has_activation_password {
                        "set"
                    } else {
                        "not set"
                    }
                );
                match &u.device {
                    Some(d) => {
                        println!(
                            "Device     PIN {} (key generation {})",
                            d.pin, d.key_generation
                        );
                        println!(
                            "           activated {}, last seen {}",
                            d.activated_at,
                            d.last_seen.as_deref().unwrap_or("never")
                        );
                    }
                    None => println!("Device     none"),
                }
                if let Some(m) = &u.mail {
                    println!(
                        "Mail       forwarded {}, delivered {}, pending {}, resent {}, filtered {}, expired {}",
                        m.forwarded,
                        m.delivered,
                        m.pending.unwrap_or(0),
                        m.resent,
                        m.filtered,
                        m.expired
                    );
                    println!(
                        "           from the device: sent {}, failed {}",
                        m.sent, m.send_failed
                    );
                }
                if !u.groups.is_empty() {
                    println!("Groups     {}", u.groups.join(", "));
                }
                // a server without the policy service answers neither
                if let Some(p) = &u.policy {
                    print_text(&policy::render_user_policy(p))?;
                }
                match &u.software {
                    Some(s) => print_text(&software::render_user_software(s))?,
                    None if u.policy.is_some() => println!("Software   none assigned"),
                    None => {}
                }
                if !u.history.is_empty() {
                    println!("Timeline");
                    for e in &u.history {
                        println!(
                            "  {}  {}{}",
                            e.at,
                            e.status,
                            e.reason
                                .as_ref()
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            UserCmd::ActivationPassword {
                email,
                password,
                generate: _,
                expires,
                max_attempts,
            } => {
                let v = client
                    .set_activation_password(
                        &email,
                        password.as_deref(),
                        expires.as_deref(),
                        max_attempts,
                    )
                    .await?;
                if args.json {
                    return output::json(&v);
                }
                match &v.password {
                    Some(p) => println!("Activation password for {}: {p}", v.email),
                    None => println!("Activation password set for {}.", v.email),
                }
                println!(
                    "It expires {} and is void after {} wrong attempts.",
                    v.expires_at, v.max_attempts
                );
                if v.password.is_some() {
                    println!(
                        "It is shown only now: give it to the user in person or by phone, not by email."
                    );
                }
            }
            UserCmd::MailSettings {
                email,
                push,
                save_sent,
                reconcile,
            } => {
                let settings = if push.is_none() && save_sent.is_none() && reconcile.is_none() {
                    client.mail_settings(&email).await?
                } else {
                    client
                        .edit_mail_settings(
                            &email,
                            serde_json::json!({ "push": push, "save_sent": save_sent, "reconcile": reconcile }),
                        )
                        .await?
                };
                if args.json {
                    return output::json(&settings);
                }
                let word = |b: bool| if b { "on" } else { "off" };
                println!("Mail settings of {email}");
                println!(
                    "  push       {}   new mail goes to the phone",
                    word(settings.push)
                );
                println!(
                    "  save-sent  {}   a copy of mail from the phone in Sent",
                    word(settings.save_sent)
                );
                println!(
                    "  reconcile  {}   read, flags, deletes and moves kept in step",
                    word(settings.reconcile)
                );
            }
            UserCmd::MailPassword { email, password } => {
                client.set_mail_password(&email, &password).await?;
                if args.json {
                    return output::json(
                        &serde_json::json!({ "email": email, "mail_password": "set" }),
                    );
                }
                println!(
                    "Mailbox password set for {email}; the server logs in to the mailbox with it now."
                );
            }
            UserCmd::Edit {
                email,
                new_email,
                name,
            } => {
                if new_email.is_none() && name.is_none() {
                    bail!("nothing to change: give --email NEW or --name NAME");
                }
                let u = client
                    .edit_user(&email, new_email.as_deref(), name.as_deref())
                    .await?;
                if args.json {
                    return output::json(&u);
                }
                if u.email != email.trim().to_lowercase() {
                    println!(
                        "{email} is now {}; an activated phone is sent its service books again.",
                        u.email
                    );
                }
                if name.is_some() {
                    println!(
                        "{} is shown as {}.",
                        u.email,
                        u.display_name.as_deref().unwrap_or("(no name)")
                    );
                }
            }
            UserCmd::Delete { email } => {
                client.delete_user(&email).await?;
                if args.json {
                    return output::json(&serde_json::json!({ "deleted": email }));
                }
                println!("Deleted {email} and their device.");
            }
        },
    }
    Ok(())
}

/// `on` / `off` (also yes/no, true/false) for a setting.
fn on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(format!("{s:?}: say on or off")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_next_page_is_read_from_the_link_header() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(super::next_link(&h), None);
        h.insert(
            reqwest::header::LINK,
            reqwest::header::HeaderValue::from_static(
                "</api/v1/users?q=a&offset=2&limit=2>; rel=\"next\"",
            ),
        );
        assert_eq!(
            super::next_link(&h).as_deref(),
            Some("/users?q=a&offset=2&limit=2")
        );
        h.insert(
            reqwest::header::LINK,
            reqwest::header::HeaderValue::from_static("<https://elsewhere/x>; rel=\"next\""),
        );
        assert_eq!(
            super::next_link(&h),
            None,
            "only the same API's pages are followed"
        );
    }
}
