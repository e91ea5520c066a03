//! `bramble admin group …`: groups of users, to assign an IT policy or a software
//! configuration to many users at once.

use anyhow::Result;
use bramble_server::admin::views::{GroupView, NewGroup};
use reqwest::Method;

use super::{Client, aligned, encode, print_text};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum GroupCmd {
    /// List the groups with their members, IT policy and software configuration.
    List,
    /// Add a group.
    Add {
        /// A name for it, e.g. Sales.
        name: String,
        /// What it is for.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// Show a group: its members, IT policy and software configuration.
    Show {
        /// The group's name.
        name: String,
    },
    /// Delete a group; its members stay, and lose what the group gave them.
    Delete {
        /// The group's name.
        name: String,
    },
    /// Put a user in a group.
    AddMember {
        /// The group's name.
        name: String,
        /// The user's email address.
        email: String,
    },
    /// Take a user out of a group.
    RemoveMember {
        /// The group's name.
        name: String,
        /// The user's email address.
        email: String,
    },
}

/// `group show`.
pub(super) fn render_group(g: &GroupView) -> String {
    let mut rows = vec![vec!["Group".to_owned(), g.name.clone()]];
    if let Some(d) = &g.description {
        rows.push(vec!["About".to_owned(), d.clone()]);
    }
    rows.push(vec![
        "IT policy".to_owned(),
        g.policy.clone().unwrap_or_else(|| "none".to_owned()),
    ]);
    rows.push(vec![
        "Software".to_owned(),
        g.software.clone().unwrap_or_else(|| "none".to_owned()),
    ]);
    rows.push(vec!["Added".to_owned(), g.created_at.clone()]);
    rows.push(vec![
        "Members".to_owned(),
        if g.members.is_empty() {
            "none".to_owned()
        } else {
            g.members.len().to_string()
        },
    ]);
    let mut out = aligned("", &rows);
    for m in &g.members {
        out.push_str(&format!("  {m}\n"));
    }
    out
}

fn group_path(name: &str) -> String {
    format!("/groups/{}", encode(name))
}

pub(super) async fn run(client: &Client, json: bool, command: GroupCmd) -> Result<()> {
    match command {
        GroupCmd::List => {
            let list: Vec<GroupView> = client.get_all("/groups", None).await?;
            if json {
                return output::json(&list);
            }
            if list.is_empty() {
                println!("No groups yet. Add one with: bramble admin group add NAME");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|g| {
                    vec![
                        g.name.clone(),
                        g.members.len().to_string(),
                        g.policy.clone().unwrap_or_else(|| "-".into()),
                        g.software.clone().unwrap_or_else(|| "-".into()),
                        g.description.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(
                &["NAME", "MEMBERS", "IT POLICY", "SOFTWARE", "DESCRIPTION"],
                &rows,
            );
        }
        GroupCmd::Add { name, description } => {
            let g: GroupView = client
                .with_body(Method::POST, "/groups", &NewGroup { name, description })
                .await?;
            if json {
                return output::json(&g);
            }
            println!("Added group {}.", g.name);
            println!(
                "Next: bramble admin group add-member {:?} EMAIL, then bramble admin policy assign POLICY --group {:?}",
                g.name, g.name
            );
        }
        GroupCmd::Show { name } => {
            let g: GroupView = client.get(&group_path(&name)).await?;
            if json {
                return output::json(&g);
            }
            print_text(&render_group(&g))?;
        }
        GroupCmd::Delete { name } => {
            client
                .no_answer::<()>(Method::DELETE, &group_path(&name), None)
                .await?;
            if json {
                return output::json(&serde_json::json!({ "deleted": name }));
            }
            println!("Deleted group {name}.");
        }
        GroupCmd::AddMember { name, email } => {
            let g: GroupView = client
                .call(
                    Method::PUT,
                    &format!("{}/members/{}", group_path(&name), encode(&email)),
                    None,
                )
                .await?
                .ok_or_else(|| anyhow::anyhow!("empty answer"))?;
            if json {
                return output::json(&g);
            }
            println!(
                "{email} is in group {} now ({} members).",
                g.name,
                g.members.len()
            );
        }
        GroupCmd::RemoveMember { name, email } => {
            let g: GroupView = client
                .call(
                    Method::DELETE,
                    &format!("{}/members/{}", group_path(&name), encode(&email)),
                    None,
                )
                .await?
                .ok_or_else(|| anyhow::anyhow!("empty answer"))?;
            if json {
                return output::json(&g);
            }
            println!(
                "{email} is no longer in group {} ({} members).",
                g.name,
                g.members.len()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_lists_its_members() {
        let g = GroupView {
            name: "Sales".into(),
            description: None,
            members: vec!["alice@example.com".into(), "bob@example.com".into()],
            policy: Some("Basic Password Security".into()),
            software: None,
            created_at: "2024-05-01T09:00:00Z".into(),
        };
        assert_eq!(
            render_group(&g),
            "Group      Sales\n\
             IT policy  Basic Password Security\n\
             Software   none\n\
             Added      2024-05-01T09:00:00Z\n\
             Members    2\n  \
             alice@example.com\n  \
             bob@example.com\n"
        );
    }
}
