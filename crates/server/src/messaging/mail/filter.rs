//! Push-mail filters (BES "global filters" and user filters): which of them decides what
//! becomes of a new message ([`decide`]). No I/O.
//!
//! BES's order: the global filters first, in order, and the first enabled one that matches
//! decides; if none matches, the user's own filters, the same way; if none of those matches
//! either, the message is forwarded as usual. A filter matches when every condition it has
//! matches (a filter without conditions matches every message):
//! - from, subject: the pattern matches the header (From as `Name <address>`);
//! - to, cc: the pattern matches at least one of the addresses;
//! - importance: the message's importance is the one named.
//!
//! A pattern is a case-insensitive substring in which `*` stands for any run of characters
//! (also none) and `?` for exactly one: `*@example.com` matches every sender of that domain,
//! `invoice` every subject with that word in it.
//!
//! Owns: the matching rules. Must not touch: the database (the caller reads the filters through
//! `bramble-store`, in the order it lists them), the mailbox, sealing.

use bramble_proto::schema::{Importance, MailHeaders};
use bramble_store::{Filter, FilterAction, FilterConditions};

/// What the filters decided for one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What to do with the message.
    pub action: FilterAction,
    /// The name of the filter that decided; `None` when no filter matched and the message is
    /// forwarded as usual.
    pub filter: Option<String>,
}

impl Decision {
    /// Whether the message goes to the device.
    pub fn forwards(&self) -> bool {
        self.action != FilterAction::DoNotForward
    }

    /// Whether it goes with priority (`MailItem.priority`).
    pub fn priority(&self) -> bool {
        self.action == FilterAction::ForwardWithPriority
    }
}

/// Decides what becomes of a message with these headers: the first enabled filter of `global`
/// that matches, else the first enabled filter of `user` that matches, else
/// [`FilterAction::Forward`]. Both lists are taken in the order given: pass them as
/// `Store::list_filters` returns them (by position).
pub fn decide(global: &[Filter], user: &[Filter], headers: &MailHeaders) -> Decision {
    let message = Folded::new(headers);
    global
        .iter()
        .chain(user)
        .find(|f| f.enabled && message.matches(&f.conditions))
        .map_or(
            Decision {
                action: FilterAction::Forward,
                filter: None,
            },
            |f| Decision {
                action: f.action,
                filter: Some(f.name.clone()),
            },
        )
}

/// Whether a message with these headers meets every condition (enabled or not is the
/// caller's business).
pub fn matches(conditions: &FilterConditions, headers: &MailHeaders) -> bool {
    Folded::new(headers).matches(conditions)
}

/// The headers a condition looks at, lower-cased once for every filter.
struct Folded {
    from: Vec<char>,
    to: Vec<Vec<char>>,
    cc: Vec<Vec<char>>,
    subject: Vec<char>,
    importance: &'static str,
}

impl Folded {
    fn new(h: &MailHeaders) -> Folded {
        Folded {
            from: fold(&h.from),
            to: h.to.iter().map(|a| fold(a)).collect(),
            cc: h.cc.iter().map(|a| fold(a)).collect(),
            subject: fold(&h.subject),
            importance: match h.importance() {
                Importance::High => "high",
                Importance::Normal => "normal",
                Importance::Low => "low",
            },
        }
    }

    fn matches(&self, c: &FilterConditions) -> bool {
        let one = |pattern: &Option<String>, text: &[char]| {
            pattern.as_deref().is_none_or(|p| contains(&fold(p), text))
        };
        let any = |pattern: &Option<String>, texts: &[Vec<char>]| {
            pattern.as_deref().is_none_or(|p| {
                let p = fold(p);
                texts.iter().any(|t| contains(&p, t))
            })
        };
        one(&c.from, &self.from)
            && any(&c.to, &self.to)
            && any(&c.cc, &self.cc)
            && one(&c.subject, &self.subject)
            && c.importance
                .as_deref()
                .is_none_or(|i| i.eq_ignore_ascii_case(self.importance))
    }
}

fn fold(s: &str) -> Vec<char> {
    s.to_lowercase().chars().collect()
}

/// Whether `text` contains a run that `pattern` matches (`*` any run, `?` one character):
/// the whole of `text` matched against `*pattern*`. The usual one-star backtracking, so at
/// most `pattern.len() × text.len()` steps whatever the input.
fn contains(pattern: &[char], text: &[char]) -> bool {
    let mut p = Vec::with_capacity(pattern.len() + 2);
    p.push('*');
    p.extend_from_slice(pattern);
    p.push('*');
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it has swallowed up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < text.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == text[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use bramble_store::FilterScope;

    use super::*;

    fn filter(name: &str, action: FilterAction, conditions: FilterConditions) -> Filter {
        Filter {
            id: 0,
            scope: FilterScope::Global,
            position: 1,
            name: name.to_owned(),
            enabled: true,
            conditions,
            action,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn headers() -> MailHeaders {
        MailHeaders {
            from: "Big Boss <boss@Corp.example.com>".into(),
            to: vec![
                "Alice <alice@example.com>".into(),
                "team@example.com".into(),
            ],
            cc: vec!["auditor@audit.example.org".into()],
            subject: "Re: Q3 Invoice #1234 – ÜBERFÄLLIG".into(),
            importance: Importance::High as i32,
            ..MailHeaders::default()
        }
    }

    fn from(p: &str) -> FilterConditions {
        FilterConditions {
            from: Some(p.into()),
            ..FilterConditions::default()
        }
    }

    fn subject(p: &str) -> FilterConditions {
        FilterConditions {
            subject: Some(p.into()),
            ..FilterConditions::default()
        }
    }

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn no_filter_forwards() {
        assert_eq!(
            decide(&[], &[], &headers()),
            Decision {
                action: FilterAction::Forward,
                filter: None
            }
        );
    }

    #[test]
    fn wildcards_match_substrings() {
        let yes = |p: &str, t: &str| contains(&chars(p), &chars(t));
        assert!(yes("", ""));
        assert!(yes("", "anything"));
        assert!(yes("boss", "Big Boss <boss@corp>"));
        assert!(yes("*@corp.example.com", "boss@corp.example.com>"));
        assert!(yes("b?ss", "boss"));
        assert!(yes("b?ss", "xbassx"));
        assert!(!yes("b?ss", "bss"));
        assert!(yes("a*c", "xxabbbbcxx"));
        assert!(yes("a*b*c", "aXbYc"));
        assert!(!yes("a*b*c", "aXcYb"));
        assert!(yes("***", ""));
        assert!(!yes("?", ""));
        assert!(yes("a?", "ab"));
        assert!(!yes("abc", "ab"));
        // Backtracking past a false start.
        assert!(yes("aab", "aaab"));
        assert!(yes("a*ab", "abaab"));
        // A long hostile text: at most pattern × text steps.
        let text: Vec<char> = "a".repeat(20_000).chars().collect();
        let pattern: Vec<char> = format!("{}b", "a*".repeat(100)).chars().collect();
        assert!(!contains(&pattern, &text));
    }

    #[test]
    fn patterns_ignore_case() {
        let h = headers();
        for (c, want) in [
            (from("BOSS@corp"), true),
            (from("big boss"), true),
            (from("*@CORP.EXAMPLE.COM"), true),
            (from("boss@other"), false),
            (subject("invoice #????"), true),
            (subject("überfällig"), true),
            (subject("invoice #12345"), false),
            (subject("re:*q3"), true),
        ] {
            assert_eq!(matches(&c, &h), want, "{c:?}");
        }
    }

    #[test]
    fn to_and_cc_match_any_address() {
        let h = headers();
        let to = |p: &str| FilterConditions {
            to: Some(p.into()),
            ..FilterConditions::default()
        };
        let cc = |p: &str| FilterConditions {
            cc: Some(p.into()),
            ..FilterConditions::default()
        };
        assert!(matches(&to("team@"), &h));
        assert!(matches(&to("ALICE"), &h));
        assert!(!matches(&to("auditor"), &h), "a Cc address is not a To");
        assert!(matches(&cc("*.example.org"), &h));
        assert!(!matches(&cc("alice"), &h));
        let nobody = MailHeaders::default();
        assert!(!matches(&to("*"), &nobody), "no address: nothing to match");
        assert!(matches(&FilterConditions::default(), &nobody));
    }

    #[test]
    fn every_condition_must_match() {
        let h = headers();
        let both = FilterConditions {
            from: Some("boss".into()),
            subject: Some("invoice".into()),
            importance: Some("high".into()),
            ..FilterConditions::default()
        };
        assert!(matches(&both, &h));
        let one_wrong = FilterConditions {
            subject: Some("lunch".into()),
            ..both.clone()
        };
        assert!(!matches(&one_wrong, &h));
        assert!(matches(&FilterConditions::default(), &h), "no condition");
    }

    #[test]
    fn importance_is_compared() {
        let with = |i: &str| FilterConditions {
            importance: Some(i.into()),
            ..FilterConditions::default()
        };
        let mut h = headers();
        assert!(matches(&with("high"), &h));
        assert!(matches(&with("HIGH"), &h));
        assert!(!matches(&with("normal"), &h));
        h.importance = Importance::Low as i32;
        assert!(matches(&with("low"), &h));
        // An importance this version does not know reads as normal.
        h.importance = 42;
        assert!(matches(&with("normal"), &h));
        h.importance = Importance::Normal as i32;
        assert!(matches(&with("normal"), &h));
        assert!(!matches(&with("low"), &h));
    }

    #[test]
    fn the_first_match_decides() {
        let h = headers();
        let list = [
            filter("Lunch", FilterAction::DoNotForward, subject("lunch")),
            filter(
                "Invoices",
                FilterAction::ForwardWithPriority,
                subject("invoice"),
            ),
            filter("Boss", FilterAction::DoNotForward, from("boss")),
        ];
        let d = decide(&list, &[], &h);
        assert_eq!(d.action, FilterAction::ForwardWithPriority);
        assert_eq!(d.filter.as_deref(), Some("Invoices"));
        assert!(d.forwards() && d.priority());
        let d = decide(&[], &list, &h);
        assert_eq!(d.filter.as_deref(), Some("Invoices"));
    }

    #[test]
    fn disabled_filters_are_skipped() {
        let h = headers();
        let mut off = filter("Off", FilterAction::DoNotForward, from("boss"));
        off.enabled = false;
        let on = filter("On", FilterAction::ForwardWithPriority, from("boss"));
        let d = decide(&[off.clone(), on], &[], &h);
        assert_eq!(d.filter.as_deref(), Some("On"));
        let d = decide(&[off], &[], &h);
        assert_eq!(d.filter, None);
        assert_eq!(d.action, FilterAction::Forward);
        assert!(d.forwards() && !d.priority());
    }

    #[test]
    fn global_filters_come_before_the_users() {
        let h = headers();
        let global = [
            filter("Not me", FilterAction::ForwardWithPriority, from("nobody")),
            filter("Drop boss", FilterAction::DoNotForward, from("boss")),
        ];
        let user = [filter(
            "Everything first",
            FilterAction::ForwardWithPriority,
            FilterConditions::default(),
        )];
        let d = decide(&global, &user, &h);
        assert_eq!(d.action, FilterAction::DoNotForward);
        assert_eq!(d.filter.as_deref(), Some("Drop boss"));
        assert!(!d.forwards());
        // No global filter matches: the user's decides.
        let d = decide(&global[..1], &user, &h);
        assert_eq!(d.filter.as_deref(), Some("Everything first"));
        assert_eq!(d.action, FilterAction::ForwardWithPriority);
    }
}
