//! A minimal IMAP client for checking what the mail stack delivered: one command at a time,
//! no literals sent, untagged replies collected as text.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub struct Imap {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    tag: u32,
}

impl Imap {
    pub fn connect(addr: SocketAddr) -> Result<Imap> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to IMAP at {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut imap = Imap {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            tag: 0,
        };
        let greeting = imap.line()?;
        if !greeting.starts_with("* OK") {
            bail!("IMAP greeting: {greeting:?}");
        }
        Ok(imap)
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("IMAP server closed the connection");
        }
        Ok(line.trim_end().to_owned())
    }

    /// Sends `tag command`; returns the untagged lines if the tagged reply is OK, else an error
    /// with the reply. A literal `{N}` in a reply is read and appended to its line.
    pub fn command(&mut self, command: &str) -> Result<Vec<String>> {
        self.tag += 1;
        let tag = format!("a{}", self.tag);
        self.writer
            .write_all(format!("{tag} {command}\r\n").as_bytes())?;
        let mut untagged = Vec::new();
        loop {
            let mut line = self.line()?;
            while let Some(n) = literal_len(&line) {
                let mut buf = vec![0; n];
                std::io::Read::read_exact(&mut self.reader, &mut buf)?;
                line.push_str(&String::from_utf8_lossy(&buf));
                line.push_str(&self.line()?);
            }
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                if rest.starts_with("OK") {
                    return Ok(untagged);
                }
                bail!("{command:?} failed: {rest}");
            }
            untagged.push(line);
        }
    }

    pub fn login(&mut self, user: &str, password: &str) -> Result<()> {
        self.command(&format!("LOGIN {} {}", quote(user), quote(password)))
            .with_context(|| format!("IMAP LOGIN as {user}"))?;
        Ok(())
    }

    /// SELECTs the mailbox and returns its `EXISTS` count.
    pub fn select(&mut self, mailbox: &str) -> Result<u32> {
        let lines = self.command(&format!("SELECT {}", quote(mailbox)))?;
        lines
            .iter()
            .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" EXISTS")?.parse().ok())
            .with_context(|| format!("no EXISTS in the SELECT reply: {lines:?}"))
    }

    /// Message numbers whose subject contains `text`.
    pub fn search_subject(&mut self, text: &str) -> Result<Vec<u32>> {
        let lines = self.command(&format!("SEARCH SUBJECT {}", quote(text)))?;
        Ok(lines
            .iter()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            .flat_map(|rest| rest.split_whitespace().filter_map(|n| n.parse().ok()))
            .collect())
    }

    pub fn logout(mut self) -> Result<()> {
        self.command("LOGOUT")?;
        Ok(())
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn literal_len(line: &str) -> Option<usize> {
    line.strip_suffix('}')?.rsplit_once('{')?.1.parse().ok()
}
