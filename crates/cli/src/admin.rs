//! `bramble admin`: a client of the administration API. On the server's machine it finds
//! the API's address and token in the data directory (`admin.json`), so no flags are needed.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bramble_server::admin::{ClientFile, UserView};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::output;

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
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
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
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = resp.bytes().await.context("reading the server's answer")?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("the server answered {status}"));
            bail!("{msg}");
        }
        Ok(Some(serde_json::from_slice(&bytes).context(
            "the server's answer is not what this client expects",
        )?))
    }

    /// `POST /users`.
    pub async fn add_user(&self, email: &str, name: Option<&str>) -> Result<UserView> {
        let body = serde_json::json!({ "email": email, "display_name": name });
        self.call(Method::POST, "/users", Some(body))
            .await?
            .context("empty answer")
    }

    /// `GET /users`.
    pub async fn list_users(&self) -> Result<Vec<UserView>> {
        Ok(self
            .call(Method::GET, "/users", None)
            .await?
            .unwrap_or_default())
    }

    /// `GET /users/{email}`.
    pub async fn user(&self, email: &str) -> Result<UserView> {
        self.call(Method::GET, &format!("/users/{}", encode(email)), None)
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
    pub async fn set_mail_password(&self, email: &str, password: &str) -> Result<()> {
        self.call::<serde_json::Value>(
            Method::PUT,
            &format!("/users/{}/mail-password", encode(email)),
            Some(serde_json::json!({ "password": password })),
        )
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
        }
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
