//! IT policy updates, service books sent again, and the compliance reports.

use bramble_proto::activation::{ActivationError, verify_policy};
use bramble_proto::schema::{self, envelope::Body};

use super::policy::{DeviceFacts, PasswordFacts, PolicySettings, compliance};
use super::state::{AppSource, ManageState};
use super::{ManageEvent, Outcome, envelope};
use crate::activation::AppliedPolicy;
use crate::{Device, DeviceError};

/// The most service books accepted in one message.
const MAX_BOOKS: usize = 64;

/// The facts the compliance check needs, from the policy service's state.
fn facts(m: &ManageState) -> DeviceFacts {
    DeviceFacts {
        password: m.password.as_ref().map(|p| PasswordFacts {
            length: p.length,
            letters: p.letters,
            digits: p.digits,
            symbols: p.symbols,
        }),
        user_apps: m
            .apps
            .iter()
            .filter(|a| a.source == AppSource::User)
            .map(|a| format!("{} {}", a.name, a.version))
            .collect(),
    }
}

/// Every problem with a policy on this device: values it could not use, then compliance.
pub(crate) fn problems_of(policy: &AppliedPolicy, m: &ManageState) -> Vec<String> {
    let (settings, mut problems) = PolicySettings::from_rules(&policy.rules);
    problems.extend(compliance(&settings, &facts(m)));
    problems
}

impl Device {
    /// The IT policy in force, if there is one.
    pub fn policy(&self) -> Option<&AppliedPolicy> {
        self.profile().and_then(|p| p.policy.as_ref())
    }

    /// The rules of the IT policy in force, typed (a device without a policy gets the
    /// defaults: nothing required, 10 password attempts).
    pub fn policy_settings(&self) -> PolicySettings {
        self.policy()
            .map(|p| PolicySettings::from_rules(&p.rules).0)
            .unwrap_or_default()
    }

    /// Why the device does not comply with the IT policy in force, in a phone user's words
    /// (empty: it complies, or there is no policy).
    pub fn compliance_problems(&self) -> Vec<String> {
        self.policy()
            .map(|p| problems_of(p, self.manage()))
            .unwrap_or_default()
    }

    /// The largest attachment the IT policy lets the device download, bytes.
    pub fn max_attachment_bytes(&self) -> Option<u64> {
        self.policy_settings().max_attachment_bytes()
    }

    /// After something that may change compliance: when the problems differ from those last
    /// reported, a `PolicyApplied` (same hash, the new problems) is queued and the change
    /// returned. Written before this returns.
    pub(crate) fn refresh_compliance(&mut self) -> Result<Option<ManageEvent>, DeviceError> {
        let Some(policy) = self.policy().cloned() else {
            return Ok(None);
        };
        let problems = problems_of(&policy, self.manage());
        if self.manage().reported_problems.as_ref() == Some(&problems) {
            return Ok(None);
        }
        let hash = hex::decode(&policy.hash).unwrap_or_default();
        self.update_manage(|m| {
            m.reported_problems = Some(problems.clone());
            if !hash.is_empty() {
                m.queue(&envelope(Body::PolicyApplied(schema::PolicyApplied {
                    policy_hash: hash.into(),
                    version: policy.version,
                    applied: true,
                    problems: problems.clone(),
                })));
            }
        })?;
        Ok(Some(ManageEvent::ComplianceChanged { problems }))
    }

    /// What applying a policy does besides replacing it: applications the user installed
    /// go when the policy forbids them. Returns the problems to report and records them as
    /// reported. Used after activation too.
    pub(crate) fn enforce_policy(
        &mut self,
        events: &mut Vec<ManageEvent>,
    ) -> Result<Vec<String>, DeviceError> {
        if !self.policy_settings().allow_third_party_apps {
            let user: Vec<String> = self
                .manage()
                .apps
                .iter()
                .filter(|a| a.source == AppSource::User)
                .map(|a| a.name.clone())
                .collect();
            for name in user {
                let app = self.remove_app_unchecked(&name)?;
                events.push(ManageEvent::AppRemoved {
                    name: app.name,
                    version: app.version,
                    reason: "your IT policy does not allow applications you installed yourself"
                        .into(),
                });
            }
        }
        let problems = self.compliance_problems();
        let reported = problems.clone();
        self.update_manage(|m| m.reported_problems = Some(reported))?;
        Ok(problems)
    }

    /// An IT policy sent after activation.
    pub(crate) fn policy_update(
        &mut self,
        signed: &schema::SignedPolicy,
        out: &mut Outcome,
    ) -> Result<(), DeviceError> {
        let refuse = |out: &mut Outcome, hash: Vec<u8>, version: u64, reason: String| {
            tracing::info!(%reason, "IT policy refused");
            out.events.push(ManageEvent::PolicyRefused {
                reason: reason.clone(),
            });
            envelope(Body::PolicyApplied(schema::PolicyApplied {
                policy_hash: hash.into(),
                version,
                applied: false,
                problems: vec![reason],
            }))
        };
        let hash = bramble_proto::activation::sha256(&signed.policy).to_vec();
        let pinned = self
            .profile()
            .and_then(|p| hex::decode(&p.domain_key).ok())
            .filter(|k| !k.is_empty());
        let Some(pinned) = pinned else {
            let answer = refuse(
                out,
                hash,
                0,
                "This device is not activated (no domain key is pinned), so it applies no IT \
                 policy."
                    .into(),
            );
            self.update_manage(|m| m.queue(&answer))?;
            return Ok(());
        };
        let (policy, hash) = match verify_policy(signed, Some(&pinned)) {
            Ok(v) => v,
            Err(e) => {
                let reason = match e {
                    ActivationError::ForeignDomain => "This IT policy is signed by another domain \
                         than the one this device belongs to; the policy in force stays."
                        .to_owned(),
                    ActivationError::BadPolicySignature => "This IT policy's signature does not \
                         verify (it was altered); the policy in force stays."
                        .to_owned(),
                    other => format!(
                        "This IT policy cannot be used ({other}); the policy in force stays."
                    ),
                };
                let answer = refuse(out, hash, 0, reason);
                self.update_manage(|m| m.queue(&answer))?;
                return Ok(());
            }
        };
        let applied = AppliedPolicy {
            name: crate::mail::cut_at(&policy.name, 256).to_owned(),
            version: policy.version,
            rules: policy
                .rules
                .iter()
                .take(1024)
                .map(|r| {
                    (
                        crate::mail::cut_at(&r.name, 256).to_owned(),
                        crate::mail::cut_at(&crate::activation::rule_text(&r.value), 1024)
                            .to_owned(),
                    )
                })
                .collect(),
            hash: hex::encode(hash),
        };
        self.update_profile_and_manage(|profile, _| {
            if let Some(p) = profile {
                p.policy = Some(applied.clone());
            }
        })?;
        let problems = self.enforce_policy(&mut out.events)?;
        tracing::info!(name = %applied.name, version = applied.version, ?problems, "IT policy applied");
        out.events.push(ManageEvent::PolicyApplied {
            name: applied.name.clone(),
            version: applied.version,
            problems: problems.clone(),
        });
        self.update_manage(|m| {
            m.queue(&envelope(Body::PolicyApplied(schema::PolicyApplied {
                policy_hash: hash.to_vec().into(),
                version: applied.version,
                applied: true,
                problems,
            })));
        })
    }

    /// Service books sent again: they replace those installed, answered as at activation.
    pub(crate) fn service_books_again(
        &mut self,
        seq: u64,
        books: &schema::ServiceBooks,
        out: &mut Outcome,
    ) -> Result<(), DeviceError> {
        if self.profile().is_none() {
            let reason = "service books arrived, but this device is not activated".to_owned();
            out.direct.push(envelope(Body::Error(schema::ErrorReport {
                code: schema::ErrorCode::BadRequest.into(),
                message: format!("The device could not use the service books: {reason}"),
                about_seq: seq,
            })));
            out.events.push(ManageEvent::Refused { reason });
            return Ok(());
        }
        let installed: Vec<(String, String)> = books
            .books
            .iter()
            .take(MAX_BOOKS)
            .map(|b| {
                (
                    crate::mail::cut_at(&b.cid, 64).to_owned(),
                    crate::mail::cut_at(&b.name, 256).to_owned(),
                )
            })
            .collect();
        let cids: Vec<String> = installed.iter().map(|(c, _)| c.clone()).collect();
        let answer = envelope(Body::ServiceBooksReceived(schema::ServiceBooksReceived {
            cids: cids.clone(),
        }));
        self.update_profile_and_manage(|profile, m| {
            if let Some(p) = profile {
                p.service_books = installed;
            }
            m.queue(&answer);
        })?;
        out.events.push(ManageEvent::ServiceBooksInstalled { cids });
        Ok(())
    }
}
