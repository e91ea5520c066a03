//! slapd starts with its people, takes changes over LDAP and gives each entry an entryUUID.

use bramble_testkit::{LdapServer, Person};

async fn mails(server: &LdapServer) -> anyhow::Result<Vec<(String, String)>> {
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(&server.url()).await?;
    ldap3::drive!(conn);
    let (entries, _) = ldap
        .search(
            bramble_testkit::ldap::PEOPLE_DN,
            ldap3::Scope::OneLevel,
            "(objectClass=inetOrgPerson)",
            vec!["cn", "mail"],
        )
        .await?
        .success()?;
    let mut out: Vec<(String, String)> = entries
        .into_iter()
        .map(ldap3::SearchEntry::construct)
        .map(|e| (e.attrs["cn"][0].clone(), e.attrs["mail"][0].clone()))
        .collect();
    out.sort();
    Ok(out)
}

#[tokio::test]
async fn slapd_serves_and_changes_people() -> anyhow::Result<()> {
    let server = LdapServer::start(&[
        Person::new("alice", "Alice Example", "alice@example.test"),
        Person::new("bob", "Bob Example", "bob@example.test"),
    ])?;
    assert_eq!(
        mails(&server).await?,
        [
            ("Alice Example".into(), "alice@example.test".into()),
            ("Bob Example".into(), "bob@example.test".into())
        ]
    );
    let uuid = server.entry_uuid("alice").await?;
    assert_eq!(uuid.len(), 36, "{uuid}");

    server
        .add_person(&Person::new("carol", "Carol Example", "carol@example.test"))
        .await?;
    server
        .modify_person(
            "alice",
            &[("cn", "Alice Liddell"), ("mail", "liddell@example.test")],
        )
        .await?;
    server.delete_person("bob").await?;
    assert_eq!(
        mails(&server).await?,
        [
            ("Alice Liddell".into(), "liddell@example.test".into()),
            ("Carol Example".into(), "carol@example.test".into())
        ]
    );
    assert_eq!(
        server.entry_uuid("alice").await?,
        uuid,
        "a change keeps the entryUUID"
    );
    Ok(())
}
