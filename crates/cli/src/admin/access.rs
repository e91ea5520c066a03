//! `bramble admin account|role|token|audit …`: who may administer the server and what they
//! did: administrator accounts, roles (BES 5's presets and custom ones), API tokens, and the
//! audit log with its CSV export.
//!
//! Owns: these commands' flags and output. Must not touch: permissions (the server decides).

use std::io::BufRead;

use anyhow::{Context, Result, bail};
use bramble_server::admin::access_api::{
    AccountEdit, AccountView, AuditView, NewAccount, NewRole, NewToken, PasswordSet,
    PermissionView, RoleEdit, RoleView, TokenView,
};
use reqwest::Method;

use super::{Body, Client, aligned, encode, print_text};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum AccountCmd {
    /// List the administrators, their roles and last logins.
    List,
    /// Add an administrator (the console's login name; a password to log in with).
    Add {
        /// Login name, e.g. jsmith.
        name: String,
        /// The person's name.
        #[arg(long, value_name = "TEXT")]
        display_name: Option<String>,
        /// The person's email address.
        #[arg(long)]
        email: Option<String>,
        /// A role to give (again for more), e.g. "Junior Helpdesk Administrator".
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
        /// Read the console password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Show one administrator: roles, what they allow, last login.
    Show { name: String },
    /// Change an administrator's name or address, or disable or enable the account.
    Edit {
        name: String,
        #[arg(long, value_name = "TEXT")]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// Refuse its logins and tokens from now on.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Accept them again.
        #[arg(long)]
        enable: bool,
    },
    /// Set an administrator's console password (read from standard input); their sessions end.
    Password { name: String },
    /// Give an administrator a role.
    Grant { name: String, role: String },
    /// Take a role from an administrator.
    Revoke { name: String, role: String },
    /// Delete an administrator account, with its sessions and tokens.
    Delete { name: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum RoleCmd {
    /// List the roles: BES 5's six presets, then custom ones.
    List,
    /// Show one role and its permissions.
    Show { name: String },
    /// Every permission a role can hold.
    Permissions,
    /// Make a custom role; it may do nothing but what is listed.
    Add {
        name: String,
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// A permission, e.g. user.view (again for more; `bramble admin role permissions`).
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
    },
    /// Change a custom role: its description, or the whole list of its permissions.
    Edit {
        name: String,
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// The role's permissions from now on (again for more).
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
    },
    /// Delete a custom role; the administrators holding it lose what it gave.
    Delete { name: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// List your API tokens (or another administrator's, or all: needs role.assign).
    List {
        /// This administrator's tokens.
        #[arg(long, conflicts_with = "all")]
        account: Option<String>,
        /// Every administrator's tokens.
        #[arg(long)]
        all: bool,
    },
    /// Make an API token for programs; its secret is shown this once.
    Add {
        /// What it is for, e.g. "monitoring".
        name: String,
        /// For another administrator (needs the role-assignment permission).
        #[arg(long)]
        account: Option<String>,
        /// Days until it stops working.
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
    },
    /// Revoke an API token by its number.
    Delete { id: i64 },
}

/// `bramble admin audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this administrator's.
    #[arg(long)]
    actor: Option<String>,
    /// Only entries whose action, target or detail contain this.
    #[arg(long)]
    text: Option<String>,
    /// Only success, denied or failed.
    #[arg(long)]
    result: Option<String>,
    /// From this time (RFC 3339, or a date: 2026-12-01).
    #[arg(long)]
    since: Option<String>,
    /// Before this time.
    #[arg(long)]
    until: Option<String>,
    /// At most this many, newest first.
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: usize,
    /// Every matching entry as CSV (for a spreadsheet), instead of a table.
    #[arg(long)]
    csv: bool,
}

fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_owned();
    if pw.is_empty() {
        bail!("no password on standard input (give it on the first line)");
    }
    Ok(pw)
}

fn account_path(name: &str) -> String {
    format!("/accounts/{}", encode(name))
}

fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

fn render_account(a: &AccountView) -> String {
    let mut rows = vec![vec!["Administrator".to_owned(), a.name.clone()]];
    rows.push(vec!["Name".into(), or_dash(&a.display_name)]);
    rows.push(vec!["Email".into(), or_dash(&a.email)]);
    rows.push(vec![
        "State".into(),
        if a.disabled { "disabled" } else { "enabled" }.into(),
    ]);
    rows.push(vec![
        "Password".into(),
        if a.has_password { "set" } else { "not set" }.into(),
    ]);
    rows.push(vec![
        "Roles".into(),
        if a.roles.is_empty() {
            "none (may do nothing)".into()
        } else {
            a.roles.join(", ")
        },
    ]);
    rows.push(vec!["Added".into(), a.created_at.clone()]);
    rows.push(vec![
        "Last login".into(),
        a.last_login.clone().unwrap_or_else(|| "never".into()),
    ]);
    let mut out = aligned("", &rows);
    out.push_str("May:\n");
    for p in &a.permissions {
        out.push_str(&format!("  {p}\n"));
    }
    out
}

pub(super) async fn account(client: &Client, json: bool, command: AccountCmd) -> Result<()> {
    match command {
        AccountCmd::List => {
            let list: Vec<AccountView> = client.get_all("/accounts", None).await?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        or_dash(&a.display_name),
                        if a.roles.is_empty() {
                            "-".into()
                        } else {
                            a.roles.join(", ")
                        },
                        a.last_login.clone().unwrap_or_else(|| "never".into()),
                        if a.disabled { "disabled" } else { "" }.into(),
                    ]
                })
                .collect();
            output::table(&["NAME", "PERSON", "ROLES", "LAST LOGIN", ""], &rows);
        }
        AccountCmd::Add {
            name,
            display_name,
            email,
            roles,
            password_stdin,
        } => {
            let password = password_stdin.then(read_password).transpose()?;
            let body = NewAccount {
                name,
                display_name,
                email,
                password,
                roles,
            };
            let a: AccountView = client.with_body(Method::POST, "/accounts", &body).await?;
            if json {
                return output::json(&a);
            }
            println!("Added administrator {}.", a.name);
            if a.roles.is_empty() {
                println!(
                    "It has no role, so it may do nothing yet: bramble admin account grant {} ROLE",
                    a.name
                );
            }
            if !a.has_password {
                println!(
                    "To log in to the console it needs a password: bramble admin account password {} < file",
                    a.name
                );
            }
        }
        AccountCmd::Show { name } => {
            let a: AccountView = client.get(&account_path(&name)).await?;
            if json {
                return output::json(&a);
            }
            print_text(&render_account(&a))?;
        }
        AccountCmd::Edit {
            name,
            display_name,
            email,
            disable,
            enable,
        } => {
            let body = AccountEdit {
                display_name,
                email,
                disabled: (disable || enable).then_some(disable),
            };
            let a: AccountView = client
                .with_body(Method::PATCH, &account_path(&name), &body)
                .await?;
            if json {
                return output::json(&a);
            }
            println!(
                "Changed administrator {}{}.",
                a.name,
                if a.disabled { " (disabled)" } else { "" }
            );
        }
        AccountCmd::Password { name } => {
            let body = PasswordSet {
                password: read_password()?,
            };
            client
                .no_answer(
                    Method::PUT,
                    &format!("{}/password", account_path(&name)),
                    Some(&body),
                )
                .await?;
            if !json {
                println!("Set the console password of {name}; their sessions have ended.");
            }
        }
        AccountCmd::Grant { name, role } => {
            let path = format!("{}/roles/{}", account_path(&name), encode(&role));
            let a: Option<AccountView> = client.call(Method::PUT, &path, None).await?;
            if json {
                return output::json(&a);
            }
            println!("{name} now holds the role {role}.");
        }
        AccountCmd::Revoke { name, role } => {
            let path = format!("{}/roles/{}", account_path(&name), encode(&role));
            let a: Option<AccountView> = client.call(Method::DELETE, &path, None).await?;
            if json {
                return output::json(&a);
            }
            println!("{name} no longer holds the role {role}.");
        }
        AccountCmd::Delete { name } => {
            client
                .no_answer::<()>(Method::DELETE, &account_path(&name), None)
                .await?;
            if !json {
                println!("Deleted administrator {name}; their sessions and tokens no longer work.");
            }
        }
    }
    Ok(())
}

fn role_path(name: &str) -> String {
    format!("/roles/{}", encode(name))
}

pub(super) async fn role(client: &Client, json: bool, command: RoleCmd) -> Result<()> {
    match command {
        RoleCmd::List => {
            let list: Vec<RoleView> = client.get_all("/roles", None).await?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        if r.preset { "preset" } else { "custom" }.into(),
                        r.permissions.len().to_string(),
                        r.accounts.to_string(),
                        r.description.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "ROLE",
                    "KIND",
                    "PERMISSIONS",
                    "ADMINISTRATORS",
                    "DESCRIPTION",
                ],
                &rows,
            );
        }
        RoleCmd::Show { name } => {
            let r: RoleView = client.get(&role_path(&name)).await?;
            if json {
                return output::json(&r);
            }
            let mut out = aligned(
                "",
                &[
                    vec!["Role".into(), r.name.clone()],
                    vec![
                        "Kind".into(),
                        if r.preset {
                            "BES preset (cannot be changed)"
                        } else {
                            "custom"
                        }
                        .into(),
                    ],
                    vec!["About".into(), or_dash(&r.description)],
                    vec!["Held by".into(), format!("{} administrator(s)", r.accounts)],
                ],
            );
            out.push_str("Permissions:\n");
            if r.permissions.is_empty() {
                out.push_str("  none\n");
            }
            for p in &r.permissions {
                out.push_str(&format!("  {p}\n"));
            }
            print_text(&out)?;
        }
        RoleCmd::Permissions => {
            let list: Vec<PermissionView> = client.get("/permissions").await?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|p| vec![p.name.clone(), p.title.clone()])
                .collect();
            output::table(&["PERMISSION", "ALLOWS"], &rows);
        }
        RoleCmd::Add {
            name,
            description,
            permissions,
        } => {
            let body = NewRole {
                name,
                description,
                permissions,
            };
            let r: RoleView = client.with_body(Method::POST, "/roles", &body).await?;
            if json {
                return output::json(&r);
            }
            println!(
                "Made the role {} with {} permission(s). Give it with: bramble admin account grant NAME {:?}",
                r.name,
                r.permissions.len(),
                r.name
            );
        }
        RoleCmd::Edit {
            name,
            description,
            permissions,
        } => {
            let body = RoleEdit {
                description,
                permissions: (!permissions.is_empty()).then_some(permissions),
            };
            let r: RoleView = client
                .with_body(Method::PATCH, &role_path(&name), &body)
                .await?;
            if json {
                return output::json(&r);
            }
            println!(
                "Changed the role {}: {} permission(s).",
                r.name,
                r.permissions.len()
            );
        }
        RoleCmd::Delete { name } => {
            client
                .no_answer::<()>(Method::DELETE, &role_path(&name), None)
                .await?;
            if !json {
                println!("Deleted the role {name}.");
            }
        }
    }
    Ok(())
}

pub(super) async fn token(client: &Client, json: bool, command: TokenCmd) -> Result<()> {
    match command {
        TokenCmd::List { account, all } => {
            let path = match (account, all) {
                (_, true) => "/tokens?all=true".to_owned(),
                (Some(a), false) => format!("/tokens?account={}", encode(&a)),
                (None, false) => "/tokens".to_owned(),
            };
            let list: Vec<TokenView> = client.get_all(&path, None).await?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.account.clone(),
                        t.name.clone(),
                        t.last_used.clone().unwrap_or_else(|| "never".into()),
                        t.expires_at.clone().unwrap_or_else(|| "never".into()),
                    ]
                })
                .collect();
            output::table(&["ID", "ACCOUNT", "NAME", "LAST USED", "EXPIRES"], &rows);
        }
        TokenCmd::Add {
            name,
            account,
            expires_in_days,
        } => {
            let body = NewToken {
                name,
                account,
                expires_in_days,
            };
            let t: TokenView = client.with_body(Method::POST, "/tokens", &body).await?;
            if json {
                return output::json(&t);
            }
            println!(
                "Made API token {} ({}) for {}. Its secret, shown only this once:",
                t.id, t.name, t.account
            );
            println!("{}", t.token.as_deref().unwrap_or("(the server sent none)"));
        }
        TokenCmd::Delete { id } => {
            client
                .no_answer::<()>(Method::DELETE, &format!("/tokens/{id}"), None)
                .await?;
            if !json {
                println!("Revoked API token {id}.");
            }
        }
    }
    Ok(())
}

pub(super) async fn audit(client: &Client, json: bool, a: AuditArgs) -> Result<()> {
    let mut q: Vec<(&str, String)> = Vec::new();
    for (k, v) in [
        ("actor", a.actor),
        ("text", a.text),
        ("result", a.result),
        ("since", a.since),
        ("until", a.until),
    ] {
        if let Some(v) = v {
            q.push((k, v));
        }
    }
    if a.csv {
        q.push(("format", "csv".into()));
    }
    let query = serde_urlencoded::to_string(&q).context("the filters")?;
    if a.csv {
        let resp = client
            .request(Method::GET, &format!("/audit?{query}"), Body::None)
            .await?;
        let text = resp.text().await.context("reading the export")?;
        return print_text(&text);
    }
    let path = if query.is_empty() {
        "/audit".to_owned()
    } else {
        format!("/audit?{query}")
    };
    let list: Vec<AuditView> = client.get_all(&path, Some(a.limit)).await?;
    if json {
        return output::json(&list);
    }
    if list.is_empty() {
        println!("No audit entries match.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            vec![
                e.at.clone(),
                e.actor.clone(),
                e.source.clone().unwrap_or_default(),
                e.action.clone(),
                e.target.clone().unwrap_or_default(),
                format!("{} ({})", e.result, e.status),
            ]
        })
        .collect();
    output::table(&["WHEN", "WHO", "FROM", "WHAT", "ON", "RESULT"], &rows);
    Ok(())
}
