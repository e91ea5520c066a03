//! Realistic business mail for the sealing benchmark, generated deterministically from a seed.
//!
//! Owns: the generator of RFC 5322 messages of 2–8 KiB: plain text, HTML (Outlook-style
//! markup) and multipart/alternative with both; greetings, paragraphs of varied vocabulary
//! drawn by word frequency (Zipf-like, about 900 words plus names, figures, dates, ticket
//! numbers and links), quoted replies with their attribution line, signatures and
//! disclaimers. It is not lorem ipsum repeated, which compresses unrealistically well.
//! Must not touch: sealing or timing (the runner does that); no I/O.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Sizes of the generated messages, in bytes.
pub const MIN_LEN: usize = 2 << 10;
/// The largest generated message.
pub const MAX_LEN: usize = 8 << 10;

/// English words, most frequent first (function words, then business mail vocabulary).
const WORDS: &str = "the of and to a in is that for it as with was on be by this are at or \
from have an they which you one we all were there their has been if more when will would \
who so no can our about up out them some could what into than then its only other new \
these two may first any like now my such over also after most many before must through back \
years where much your way well down should because each just those people how too little \
state good very make world still own see men work long get here between both life being \
under never day same another know while last might us great old year off come since against \
go came right used take three states himself few house use during without again place \
around however home small found thought went say part once general high upon school every \
does got left number course war until always away something fact though water less public \
put think almost hand enough far took head yet government system better set told nothing \
night end why called didn't eyes find going look asked later knew point next program city \
business give group toward young days let room president side social given present several \
order national possible rather second face per among form important often things looking \
early white case john become large big need four within felt along children saw best church \
ever least power development light thing seemed family interest want members mind country \
area others done turned although open god service problem certain kind different thus began \
door help means sense whole matter perhaps itself york times law human line above name \
example action company hands local show whether five history gave today either act feet \
across taken past quite anything seen having death experience body word half really week \
free field car words question process office meeting schedule budget quarter review report \
project team customer contract proposal invoice payment deadline update status agenda call \
draft version attached attachment document file folder spreadsheet presentation slides \
figures numbers forecast revenue cost costs margin sales pipeline lead leads account \
accounts client clients vendor vendors supplier partner partners board director manager \
engineer support ticket issue issues bug release deployment server network outage \
maintenance window change request approval approve approved sign signed legal finance \
marketing campaign launch product roadmap feature features priority priorities risk risks \
plan plans planning estimate estimates timeline milestone milestones delivery shipment \
order orders warehouse inventory stock purchase quote pricing discount renewal license \
licenses subscription training onboarding hiring candidate interview offer salary travel \
flight hotel expense expenses receipt reimbursement conference workshop webinar \
feedback comments notes minutes summary action items follow confirm confirmed available \
availability tomorrow monday tuesday wednesday thursday friday morning afternoon evening \
noon asap soon quickly shortly regarding attached below above previous earlier latest \
final revised updated pending open closed resolved blocked delayed scheduled cancelled \
moved postponed thanks thank appreciate sorry apologies unfortunately please kindly \
happy glad sure great perfect fine okay agreed agree disagree concern concerns question \
questions answer answers clarify clarification details detail information data analysis \
results result numbers total monthly weekly daily annual quarterly fiscal target targets \
goal goals objective performance metrics dashboard database backup restore migration \
upgrade security password access permission permissions policy compliance audit \
regional headquarters branch site sites region europe asia america london paris berlin \
toronto chicago boston seattle austin denver phone mobile desk extension conference bridge \
dial link calendar invite invitation room floor building parking lunch dinner coffee \
visit trip client's team's we're i'm you're it's don't can't won't let's that's there's \
we'll i'll you'll i've we've they're should've couldn't wouldn't haven't isn't aren't \
mentioned discussed suggested proposed decided agreed noticed realized expected hoped \
wanted needed asked reviewed checked sent received shared forwarded copied replied \
signed finished started completed prepared submitted uploaded downloaded installed \
tested fixed broken working running slow fast higher lower increase decrease growth \
decline drop spike trend compared versus against average median estimate roughly about \
approximately exactly nearly almost least most best worst better worse new old current \
former next last initial second third fourth percent million thousand hundred dozen \
several various multiple single double additional extra remaining rest whole partial \
customer's vendor's manager's supplier's internal external official informal formal \
quick brief short long detailed simple complex clear unclear urgent critical minor major \
ready draft sample template format spreadsheet column row sheet tab page section chapter \
paragraph line item list table chart graph diagram screenshot photo picture scan copy";

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Sandra",
    "Mark",
    "Ashley",
    "Steven",
    "Emily",
    "Paul",
    "Donna",
    "Andrew",
    "Michelle",
    "Joshua",
    "Carol",
    "Kevin",
    "Amanda",
    "Brian",
    "Melissa",
    "George",
    "Deborah",
    "Priya",
    "Wei",
    "Hiroshi",
    "Fatima",
    "Olga",
    "Mateo",
    "Aisha",
    "Lars",
    "Ingrid",
    "Rahul",
    "Chen",
    "Sofia",
    "Kwame",
    "Yuki",
    "Noor",
    "Pierre",
    "Anika",
    "Diego",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Patel",
    "Kim",
    "Tanaka",
    "Muller",
    "Schmidt",
    "Dubois",
    "Rossi",
    "Kowalski",
    "Novak",
    "Ivanova",
    "Okafor",
    "Haddad",
    "Singh",
    "Larsen",
    "Jensen",
    "Costa",
    "Silva",
    "Yamamoto",
    "Chowdhury",
    "Fischer",
];
const COMPANIES: &[(&str, &str)] = &[
    ("Northwind Traders", "northwind.example"),
    ("Contoso Ltd", "contoso.example"),
    ("Fabrikam Inc", "fabrikam.example"),
    ("Tailspin Toys", "tailspin.example"),
    ("Wingtip Partners", "wingtip.example"),
    ("Litware Systems", "litware.example"),
    ("Adventure Works", "adventure-works.example"),
    ("Proseware Group", "proseware.example"),
    ("Lucerne Publishing", "lucernepublishing.example"),
    ("Woodgrove Bank", "woodgrovebank.example"),
];
const TITLES: &[&str] = &[
    "Account Manager",
    "Senior Software Engineer",
    "Director of Operations",
    "Finance Controller",
    "IT Administrator",
    "Head of Sales, EMEA",
    "Project Coordinator",
    "VP Marketing",
    "Procurement Specialist",
    "Customer Success Lead",
];
const TOPICS: &[&str] = &[
    "Q3 budget review",
    "Contract renewal",
    "Server maintenance this weekend",
    "Invoice",
    "Meeting notes",
    "Updated proposal",
    "Travel plans for the conference",
    "Release schedule",
    "Onboarding checklist",
    "Pricing question",
    "Outage report",
    "Hiring update",
    "Board deck draft",
    "Shipment delay",
    "Quarterly forecast",
    "Security audit findings",
];
const GREETINGS: &[&str] = &["Hi", "Hello", "Dear", "Hey", "Good morning", "Morning"];
const CLOSINGS: &[&str] = &[
    "Thanks",
    "Best regards",
    "Kind regards",
    "Regards",
    "Cheers",
    "Many thanks",
    "Best",
    "Thank you",
];
const MONTHS: &[&str] = &[
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: &[&str] = &["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A person writing or receiving mail.
#[derive(Debug, Clone)]
struct Person {
    first: &'static str,
    last: &'static str,
    company: usize,
    title: &'static str,
    phone: String,
}

impl Person {
    fn address(&self) -> String {
        format!(
            "{}.{}@{}",
            self.first.to_lowercase(),
            self.last.to_lowercase(),
            COMPANIES[self.company].1
        )
    }
    fn mailbox(&self) -> String {
        format!("{} {} <{}>", self.first, self.last, self.address())
    }
}

/// The generator: a seeded RNG and the word frequency table.
#[derive(Debug)]
pub struct Corpus {
    rng: StdRng,
    words: Vec<&'static str>,
    /// Cumulative Zipf weights of `words`.
    cumulative: Vec<f64>,
    /// A message counter, for Message-IDs.
    n: u64,
}

impl Corpus {
    /// A generator; the same seed gives the same messages.
    pub fn new(seed: u64) -> Corpus {
        let words: Vec<&'static str> = WORDS.split_whitespace().collect();
        let mut cumulative = Vec::with_capacity(words.len());
        let mut total = 0.0;
        for rank in 0..words.len() {
            total += 1.0 / (rank as f64 + 2.7);
            cumulative.push(total);
        }
        Corpus {
            rng: StdRng::seed_from_u64(seed),
            words,
            cumulative,
            n: 0,
        }
    }

    /// `count` messages of [`MIN_LEN`]..=[`MAX_LEN`] bytes.
    pub fn messages(&mut self, count: usize) -> Vec<Vec<u8>> {
        (0..count).map(|_| self.message().into_bytes()).collect()
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    fn word(&mut self) -> &'static str {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = self.rng.random_range(0.0..total);
        let i = self.cumulative.partition_point(|c| *c < x);
        self.words[i.min(self.words.len() - 1)]
    }

    fn person(&mut self) -> Person {
        Person {
            first: self.pick(FIRST),
            last: self.pick(LAST),
            company: self.rng.random_range(0..COMPANIES.len()),
            title: self.pick(TITLES),
            phone: format!(
                "+1 {:03} {:03} {:04}",
                self.rng.random_range(200..999),
                self.rng.random_range(200..999),
                self.rng.random_range(0..10_000)
            ),
        }
    }

    fn date(&mut self) -> String {
        format!(
            "{}, {} {} 2026 {:02}:{:02}:{:02} {}",
            self.pick(DAYS),
            self.rng.random_range(1..29),
            self.pick(MONTHS),
            self.rng.random_range(7..20),
            self.rng.random_range(0..60),
            self.rng.random_range(0..60),
            self.pick(&["+0000", "-0500", "+0100", "-0800", "+0530"])
        )
    }

    /// A token that is not a dictionary word: a figure, a date, a ticket, a link.
    fn special(&mut self) -> String {
        match self.rng.random_range(0..8) {
            0 => format!("${}", self.rng.random_range(100..250_000)),
            1 => format!("{}%", self.rng.random_range(1..100)),
            2 => format!(
                "{}-{}",
                self.pick(&["INC", "CHG", "PO", "INV", "REQ", "JIRA"]),
                self.rng.random_range(1000..99_999)
            ),
            3 => format!(
                "{}/{}",
                self.rng.random_range(1..13),
                self.rng.random_range(1..29)
            ),
            4 => format!(
                "{}:{:02}",
                self.rng.random_range(8..18),
                self.pick(&[0, 15, 30, 45])
            ),
            5 => format!(
                "https://{}/{}/{:x}",
                self.pick(COMPANIES).1,
                self.pick(&["docs", "share", "tickets", "wiki", "drive"]),
                self.rng.random::<u32>()
            ),
            6 => self.pick(FIRST).to_owned(),
            _ => format!("{}", self.rng.random_range(2..500)),
        }
    }

    fn sentence(&mut self) -> String {
        let len = self.rng.random_range(5..22);
        let mut s = String::new();
        for i in 0..len {
            let w = if self.rng.random_bool(0.06) {
                self.special()
            } else {
                self.word().to_owned()
            };
            if i == 0 {
                let mut c = w.chars();
                if let Some(f) = c.next() {
                    s.extend(f.to_uppercase());
                    s.push_str(c.as_str());
                }
            } else {
                if self.rng.random_bool(0.07) {
                    s.push(',');
                }
                s.push(' ');
                s.push_str(&w);
            }
        }
        s.push(self.pick(&['.', '.', '.', '.', '?', '!']));
        s
    }

    fn paragraph(&mut self) -> String {
        let n = self.rng.random_range(1..6);
        let sentences: Vec<String> = (0..n).map(|_| self.sentence()).collect();
        sentences.join(" ")
    }

    /// Wraps text at 72 columns, as mail clients do.
    fn wrap(text: &str, prefix: &str) -> String {
        let mut out = String::new();
        let mut line = String::new();
        for w in text.split(' ') {
            if !line.is_empty() && line.len() + 1 + w.len() > 72 {
                out.push_str(prefix);
                out.push_str(&line);
                out.push('\n');
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(w);
        }
        if !line.is_empty() {
            out.push_str(prefix);
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    fn signature(&mut self, p: &Person) -> Vec<String> {
        let (company, domain) = COMPANIES[p.company];
        let mut lines = vec![
            format!("{} {}", p.first, p.last),
            format!("{} | {company}", p.title),
            format!("Tel {} | Mobile {}", p.phone, self.person().phone),
            format!("www.{domain}"),
        ];
        if self.rng.random_bool(0.4) {
            lines.push(String::new());
            lines.push(format!(
                "CONFIDENTIALITY NOTICE: This e-mail and any attachments are for the sole use \
                 of the intended recipient(s) and may contain information of {company} that is \
                 confidential. If you are not the intended recipient, please contact the sender \
                 and destroy all copies of the original message."
            ));
        }
        lines
    }

    /// The text blocks of one body: greeting, paragraphs, closing; sized to `budget` bytes.
    fn body_blocks(&mut self, to: &Person, budget: usize) -> Vec<String> {
        let greeting = format!("{} {},", self.pick(GREETINGS), to.first);
        let mut blocks = vec![greeting];
        let mut used = blocks[0].len();
        loop {
            let p = self.paragraph();
            if used + p.len() > budget && blocks.len() > 1 {
                break;
            }
            used += p.len() + 2;
            blocks.push(p);
            if used >= budget {
                break;
            }
        }
        blocks
    }

    fn message(&mut self) -> String {
        // Pick a size, then keep generating until the message fits it; a message outside
        // 2–8 KiB (rare: one long paragraph) is generated again.
        loop {
            let target = self.rng.random_range(MIN_LEN..=MAX_LEN);
            let m = self.message_near(target);
            if (MIN_LEN..=MAX_LEN).contains(&m.len()) {
                return m;
            }
        }
    }

    fn message_near(&mut self, target: usize) -> String {
        self.n += 1;
        let from = self.person();
        let to = self.person();
        let reply = self.rng.random_bool(0.55);
        let topic = self.pick(TOPICS);
        let subject = if reply {
            format!(
                "{}{topic}",
                self.pick(&["Re: ", "RE: ", "Fwd: ", "Re: Re: "])
            )
        } else {
            topic.to_owned()
        };
        let kind = self.rng.random_range(0..10); // 0..4 plain, 4..6 HTML, 6..10 both
        let mut head = format!(
            "Return-Path: <{from_addr}>\r\nReceived: from mail.{dom} (mail.{dom} [10.{a}.{b}.{c}])\r\n\tby mx.{todom} with ESMTPS id {id:x}\r\n\tfor <{to_addr}>; {date}\r\nFrom: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{mid:016x}.{n}@{dom}>\r\nMIME-Version: 1.0\r\n",
            from_addr = from.address(),
            dom = COMPANIES[from.company].1,
            todom = COMPANIES[to.company].1,
            a = self.rng.random_range(0..255),
            b = self.rng.random_range(0..255),
            c = self.rng.random_range(1..255),
            id = self.rng.random::<u64>(),
            to_addr = to.address(),
            date = self.date(),
            from = from.mailbox(),
            to = to.mailbox(),
            mid = self.rng.random::<u64>(),
            n = self.n,
        );
        if self.rng.random_bool(0.3) {
            let cc = self.person();
            head.push_str(&format!("Cc: {}\r\n", cc.mailbox()));
        }
        if reply {
            head.push_str(&format!(
                "In-Reply-To: <{:016x}@{}>\r\n",
                self.rng.random::<u64>(),
                COMPANIES[to.company].1
            ));
        }
        // Room left for the body parts: a multipart message carries the text twice.
        let overhead = head.len() + 400;
        let room = target.saturating_sub(overhead).max(600);
        let per_part = if kind >= 6 {
            room * 2 / 5
        } else {
            room * 3 / 4
        };
        let (own, quote) = if reply {
            (per_part / 2, per_part / 2)
        } else {
            (per_part, 0)
        };
        let blocks = self.body_blocks(&to, own);
        let closing = format!("{},", self.pick(CLOSINGS));
        let sig = self.signature(&from);
        let quoted = if reply {
            let qd = self.date();
            let qblocks = self.body_blocks(&from, quote);
            let qsig = self.signature(&to);
            Some((format!("On {qd}, {} wrote:", to.mailbox()), qblocks, qsig))
        } else {
            None
        };

        let plain = {
            let mut t = String::new();
            for b in &blocks {
                t.push_str(&Self::wrap(b, ""));
                t.push('\n');
            }
            t.push_str(&closing);
            t.push('\n');
            t.push_str(from.first);
            t.push_str("\n\n-- \n");
            for l in &sig {
                t.push_str(&Self::wrap(l, ""));
            }
            if let Some((attr, qb, qs)) = &quoted {
                t.push('\n');
                t.push_str(attr);
                t.push('\n');
                for b in qb {
                    t.push_str(&Self::wrap(b, "> "));
                    t.push_str(">\n");
                }
                t.push_str("> -- \n");
                for l in qs {
                    t.push_str(&Self::wrap(l, "> "));
                }
            }
            t.replace('\n', "\r\n")
        };
        let html = {
            const P: &str = "<p class=\"MsoNormal\" style=\"margin:0cm;font-size:11pt;font-family:Calibri,sans-serif\">";
            let mut h = String::from(
                "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"><style>p.MsoNormal{margin:0cm;font-size:11.0pt;font-family:\"Calibri\",sans-serif;}</style></head>\r\n<body lang=\"EN-US\" link=\"#0563C1\" vlink=\"#954F72\"><div class=\"WordSection1\">\r\n",
            );
            for b in &blocks {
                h.push_str(P);
                h.push_str(&html_escape(b));
                h.push_str("</p>\r\n");
                h.push_str(P);
                h.push_str("&nbsp;</p>\r\n");
            }
            h.push_str(&format!(
                "{P}{}<br>{}</p>\r\n<div style=\"color:#595959;font-size:9pt\">",
                html_escape(&closing),
                from.first
            ));
            for l in &sig {
                h.push_str(&format!("<span>{}</span><br>\r\n", html_escape(l)));
            }
            h.push_str("</div>\r\n");
            if let Some((attr, qb, qs)) = &quoted {
                h.push_str("<div style=\"border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm\"><p class=\"MsoNormal\"><b>From:</b> ");
                h.push_str(&html_escape(attr));
                h.push_str("</p></div>\r\n<blockquote style=\"margin:0 0 0 .8ex;border-left:1px #ccc solid;padding-left:1ex\">\r\n");
                for b in qb {
                    h.push_str(P);
                    h.push_str(&html_escape(b));
                    h.push_str("</p>\r\n");
                }
                for l in qs {
                    h.push_str(&format!("<span>{}</span><br>\r\n", html_escape(l)));
                }
                h.push_str("</blockquote>\r\n");
            }
            h.push_str("</div></body></html>\r\n");
            h
        };

        let mut m = head;
        match kind {
            0..=3 => {
                m.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
                m.push_str(&plain);
            }
            4 | 5 => {
                m.push_str("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
                m.push_str(&html);
            }
            _ => {
                let boundary = format!("_000_{:032x}_", self.rng.random::<u128>());
                m.push_str(&format!(
                    "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{plain}\r\n--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n--{boundary}--\r\n"
                ));
            }
        }
        m
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_sized_and_varied() {
        let a = Corpus::new(7).messages(200);
        let b = Corpus::new(7).messages(200);
        assert_eq!(a, b, "same seed, same mail");
        assert_ne!(a, Corpus::new(8).messages(200));
        for m in &a {
            assert!((MIN_LEN..=MAX_LEN).contains(&m.len()), "{}", m.len());
        }
        let text: Vec<String> = a
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        let all = text.join("\n");
        for needle in [
            "Content-Type: text/plain",
            "Content-Type: text/html",
            "multipart/alternative",
            "\r\n> ",
            "wrote:",
            "-- \r\n",
            "<blockquote",
        ] {
            assert!(all.contains(needle), "no message has {needle:?}");
        }
        let distinct: std::collections::HashSet<&str> = all.split_whitespace().collect();
        assert!(distinct.len() > 3000, "{} distinct tokens", distinct.len());
    }
}
