//! The synchronization service's client for the organizer server: CalDAV (calendar, tasks,
//! memos) and CardDAV (contacts) over HTTP or HTTPS, with `libdav`.
//!
//! Owns: talking CalDAV/CardDAV to the organizer server. Logging in (HTTP Basic, as the user
//! or as a service account working on a user's home), finding the collection of each
//! [`Database`] (and creating it when there is none), listing changes with RFC 6578 sync
//! tokens, fetching resources, and creating, replacing and deleting them with etags so that an
//! edit made on the server meanwhile is never overwritten ([`PutOutcome::Conflict`]). Every
//! response body is bounded ([`MAX_RESPONSE`]), every request has a deadline
//! ([`REQUEST_TIMEOUT`]), and nothing the server sends can make it panic.
//!
//! Must not touch: the configuration database (what was synchronized, sync tokens and etags are
//! the service's to keep, through `bramble-store`) and the device protocol (it knows nothing of
//! devices, PINs or sealing). Resource data passes through as text; iCalendar and vCard are
//! parsed elsewhere.
//!
//! Hrefs are paths on the server in `libdav`'s normal form: percent-decoded except for
//! `/ ? # [ ]` (Radicale's `/alice%40example.test/` is `/alice@example.test/` here). Pass them
//! back as they came.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use libdav::caldav::{
    CalendarComponent, CreateCalendar, FindCalendarHomeSet, FindCalendars, GetCalendarResources,
    GetSupportedComponents,
};
use libdav::carddav::{
    CreateAddressBook, FindAddressBookHomeSet, FindAddressBooks, GetAddressBookResources,
};
use libdav::dav::{
    Delete, GetEtag, PutResource, PutResourceResponse, RequestError, SyncCollection, WebDavClient,
    WebDavError,
};
use libdav::requests::DavRequest;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The largest response body read from the server (a listing of many thousands of resources
/// fits well within it); a larger one fails with [`DavError::TooLarge`].
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// How long one request may take, connecting and reading the whole body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most hrefs asked for in one multiget ([`DavClient::fetch`]).
pub const FETCH_BATCH: usize = 200;

/// Percent-encoded in a resource name: all but RFC 3986's unreserved characters.
const NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

type HttpError = hyper_util::client::legacy::Error;

/// Where and as whom to log in.
#[derive(Clone)]
pub struct DavAccount {
    /// The server's base URL, `http://` or `https://` (e.g. `https://dav.example.com/`).
    pub url: String,
    /// The login: the user's, or the service account's.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for DavAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DavAccount")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

pub use bramble_organizer::Database;

/// The calendar component a database's collection holds (`None`: an address book).
fn component(db: Database) -> Option<CalendarComponent> {
    match db {
        Database::Calendar => Some(CalendarComponent::VEvent),
        Database::Contacts => None,
        Database::Tasks => Some(CalendarComponent::VTodo),
        Database::Memos => Some(CalendarComponent::VJournal),
    }
}

fn content_type(db: Database) -> &'static str {
    match db {
        Database::Contacts => "text/vcard; charset=utf-8",
        _ => "text/calendar; charset=utf-8",
    }
}

/// A resource as a listing names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its href.
    pub href: String,
    /// Its current etag.
    pub etag: String,
}

/// What [`DavClient::changes`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The token to ask with next time.
    pub token: String,
    /// Resources new or changed since the token asked with (all of them, without one).
    pub changed: Vec<Listed>,
    /// Hrefs of resources deleted since then.
    pub deleted: Vec<String>,
}

/// A resource's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Its href.
    pub href: String,
    /// The etag of this version.
    pub etag: String,
    /// The iCalendar or vCard text.
    pub data: String,
}

/// What became of a create or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Stored; this is its href and new etag.
    Stored {
        /// The resource's href.
        href: String,
        /// Its etag now.
        etag: String,
    },
    /// Not stored (HTTP 412): the server's copy changed since the etag given (update), or a
    /// resource of that name exists already (create). Fetch it and decide again.
    Conflict,
}

/// What became of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Deleted.
    Deleted,
    /// The server did not have it (HTTP 404): deleted already.
    Gone,
    /// Not deleted (HTTP 412): the server's copy changed since the etag given.
    Conflict,
}

/// Why talking to the CalDAV/CardDAV server failed, in an administrator's words.
#[derive(Debug, thiserror::Error)]
pub enum DavError {
    /// The configured URL is not an `http://` or `https://` URL with a host.
    #[error("the CalDAV/CardDAV server URL {url:?} is not usable: {why}; check [server.sync] url")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// Connecting failed, or the connection broke.
    #[error(
        "cannot reach the CalDAV/CardDAV server at {url}: {why}; check [server.sync] url and \
         that the server is running"
    )]
    Unreachable {
        /// The server's base URL.
        url: String,
        /// The cause, with its chain.
        why: String,
    },
    /// A request took longer than [`REQUEST_TIMEOUT`].
    #[error(
        "the CalDAV/CardDAV server at {url} did not answer within {secs} s; check that it is \
         running and not overloaded"
    )]
    Timeout {
        /// The server's base URL.
        url: String,
        /// The deadline, in seconds.
        secs: u64,
    },
    /// HTTPS, but this machine has no trusted CA certificates to check the server with.
    #[error(
        "cannot check the CalDAV/CardDAV server's certificate: {why}; install the CA \
         certificates (Debian package ca-certificates) or point SSL_CERT_FILE at them"
    )]
    NoTrustRoots {
        /// What loading them said.
        why: String,
    },
    /// The server refused the username and password (HTTP 401).
    #[error(
        "the CalDAV/CardDAV server refused the login of {username}: check the user's \
         organizer credentials"
    )]
    Unauthorized {
        /// The login refused.
        username: String,
    },
    /// Logged in, but not allowed (HTTP 403).
    #[error(
        "the CalDAV/CardDAV server does not let {username} {what}: check the account's rights \
         on the server (a service account needs read and write access to every user's \
         collections)"
    )]
    Forbidden {
        /// The login.
        username: String,
        /// What it tried.
        what: String,
    },
    /// The server answers HTTP but not as a CalDAV/CardDAV server.
    #[error(
        "the server at {url} does not look like a CalDAV/CardDAV server ({why}); check \
         [server.sync] url"
    )]
    NotDav {
        /// The server's base URL.
        url: String,
        /// What was missing.
        why: String,
    },
    /// The sync token is not (or no longer) valid: list the collection again without one.
    #[error(
        "the CalDAV/CardDAV server no longer accepts the sync token; the collection is listed \
         again in full"
    )]
    TokenInvalid,
    /// A response body exceeded [`MAX_RESPONSE`].
    #[error("the CalDAV/CardDAV server's answer to {what} is larger than {limit} bytes; refused")]
    TooLarge {
        /// The request.
        what: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// Any other HTTP status that is not a success.
    #[error("the CalDAV/CardDAV server answered {what} with HTTP {status}")]
    Status {
        /// The status code.
        status: u16,
        /// The request.
        what: String,
    },
    /// A resource name this client will not use (empty, `.`, `..`, or with `%` or control
    /// characters).
    #[error("{name:?} cannot be a resource name on the CalDAV/CardDAV server")]
    BadName {
        /// The name.
        name: String,
    },
    /// The server's answer could not be understood.
    #[error("the CalDAV/CardDAV server's answer makes no sense: {0}")]
    Protocol(String),
}

/// The HTTP client libdav drives: adds the `Authorization` header to every request and bounds
/// every response body.
#[derive(Clone)]
struct Http {
    client: Client<HttpsConnector<HttpConnector>, String>,
    authorization: HeaderValue,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").finish_non_exhaustive()
    }
}

impl tower::Service<Request<String>> for Http {
    type Response = Response<Limited<Incoming>>;
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, HttpError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), HttpError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<String>) -> Self::Future {
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, self.authorization.clone());
        let response = self.client.request(request);
        Box::pin(async move { Ok(response.await?.map(|body| Limited::new(body, MAX_RESPONSE))) })
    }
}

/// A logged-in connection to one user's organizer data (as the user, or as a service account
/// given the user's home). Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct DavClient {
    dav: WebDavClient<Http>,
    url: String,
    username: String,
    calendar_home: Option<String>,
    contacts_home: Option<String>,
}

impl std::fmt::Debug for DavClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DavClient")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("calendar_home", &self.calendar_home)
            .field("contacts_home", &self.contacts_home)
            .finish_non_exhaustive()
    }
}

impl DavClient {
    /// Logs in and finds the principal and the calendar and address book home sets.
    ///
    /// `home` overrides discovery: the collection home of this user on the server, e.g.
    /// `"/alice@example.com/"` (needed when a service account works on a user's data, since
    /// discovery finds the service account's own). It is created when the server has none yet
    /// (a user who never logged in there).
    pub async fn connect(account: &DavAccount, home: Option<&str>) -> Result<DavClient, DavError> {
        let bad_url = |why: &str| DavError::BadUrl {
            url: account.url.clone(),
            why: why.to_owned(),
        };
        let base: Uri = account.url.parse().map_err(|e| bad_url(&format!("{e}")))?;
        let https = match base.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad_url("it must start with http:// or https://")),
        };
        if base.host().is_none_or(str::is_empty) {
            return Err(bad_url("it names no host"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = hyper_rustls::HttpsConnectorBuilder::new();
        let tls = if https {
            tls.with_provider_and_native_roots(provider)
                .map_err(|e| DavError::NoTrustRoots { why: e.to_string() })?
        } else {
            // never used for http://, and it must not need the CA certificates
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| DavError::NoTrustRoots { why: e.to_string() })?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            tls.with_tls_config(config)
        };
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = tls.https_or_http().enable_http1().wrap_connector(tcp);
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", account.username, account.password));
        let mut authorization = HeaderValue::try_from(format!("Basic {credentials}"))
            .map_err(|e| DavError::Protocol(format!("building the Authorization header: {e}")))?;
        authorization.set_sensitive(true);
        let http = Http {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .build(connector),
            authorization,
        };
        let mut client = DavClient {
            dav: WebDavClient::new(base, http),
            url: account.url.clone(),
            username: account.username.clone(),
            calendar_home: None,
            contacts_home: None,
        };
        match home {
            Some(home) => {
                let home = normal_collection_href(home)?;
                client.ensure_home(&home).await?;
                client.calendar_home = Some(home.clone());
                client.contacts_home = Some(home);
            }
            None => client.discover().await?,
        }
        Ok(client)
    }

    /// The principal, then its home sets (their paths: a home set on another host is not
    /// followed).
    async fn discover(&mut self) -> Result<(), DavError> {
        let principal = match timeout(&self.url, self.dav.find_current_user_principal()).await? {
            Ok(Some(principal)) => principal,
            Ok(None) => {
                return Err(DavError::NotDav {
                    url: self.url.clone(),
                    why: "it names no current-user-principal".to_owned(),
                });
            }
            Err(libdav::dav::FindCurrentUserPrincipalError::RequestError(e)) => {
                return Err(self.error("finding the user's principal", e));
            }
            Err(libdav::dav::FindCurrentUserPrincipalError::InvalidInput(e)) => {
                return Err(bad_url_error(&self.url, &e));
            }
        };
        let principal = principal.path().to_owned();
        let what = format!("finding the calendar home of {principal}");
        self.calendar_home = self
            .run(&what, FindCalendarHomeSet::new(&principal))
            .await?
            .home_sets
            .first()
            .map(|uri| uri.path().to_owned());
        let what = format!("finding the address book home of {principal}");
        self.contacts_home = self
            .run(&what, FindAddressBookHomeSet::new(&principal))
            .await?
            .home_sets
            .first()
            .map(|uri| uri.path().to_owned());
        if self.calendar_home.is_none() && self.contacts_home.is_none() {
            return Err(DavError::NotDav {
                url: self.url.clone(),
                why: format!("the principal {principal} has no calendar or address book home"),
            });
        }
        Ok(())
    }

    /// PROPFIND `home`; MKCOL it when it is not there.
    async fn ensure_home(&self, home: &str) -> Result<(), DavError> {
        let body = r#"<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/></D:prop></D:propfind>"#;
        let status = self
            .raw("PROPFIND", home, Some(("Depth", "0")), body.to_owned())
            .await?;
        let what = format!("looking at {home}");
        match status {
            StatusCode::MULTI_STATUS | StatusCode::OK => Ok(()),
            StatusCode::NOT_FOUND => {
                let status = self.raw("MKCOL", home, None, String::new()).await?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(self.status_error(&format!("creating {home}"), status))
                }
            }
            status => Err(self.status_error(&what, status)),
        }
    }

    /// One request outside libdav's set; returns the status (the body is read and dropped).
    async fn raw(
        &self,
        method: &str,
        href: &str,
        header: Option<(&str, &str)>,
        body: String,
    ) -> Result<StatusCode, DavError> {
        let what = format!("{method} {href}");
        let uri = self
            .dav
            .relative_uri(href)
            .map_err(|e| DavError::Protocol(format!("{what}: {e}")))?;
        let method = http::Method::from_bytes(method.as_bytes())
            .map_err(|e| DavError::Protocol(format!("{what}: {e}")))?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("Content-Type", "application/xml; charset=utf-8");
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let request = request
            .body(body)
            .map_err(|e| DavError::Protocol(format!("{what}: {e}")))?;
        match timeout(&self.url, self.dav.request_raw(request)).await? {
            Ok((parts, _body)) => Ok(parts.status),
            Err(e) => Err(self.error(&what, WebDavError::Request(e))),
        }
    }

    fn home(&self, db: Database) -> Result<&str, DavError> {
        let home = match db {
            Database::Contacts => &self.contacts_home,
            _ => &self.calendar_home,
        };
        home.as_deref().ok_or_else(|| DavError::NotDav {
            url: self.url.clone(),
            why: format!("{} has no home for {}", self.username, db.as_str()),
        })
    }

    /// The collection that holds this database: the first address book (Contacts), or the
    /// first calendar whose supported components include VEVENT (Calendar), VTODO (Tasks) or
    /// VJOURNAL (Memos) — one that names none supports all — "first" in href order. When there
    /// is none, creates `calendar/`, `contacts/`, `tasks/` or `memos/` under the home (a
    /// calendar with only that component). Returns its href.
    ///
    /// A calendar that supports several components serves each of those databases, so its
    /// listings may hold other components than the database's.
    pub async fn collection(&self, db: Database) -> Result<String, DavError> {
        let home = self.home(db)?;
        let found = match component(db) {
            None => {
                let what = format!("listing the address books in {home}");
                let mut hrefs: Vec<String> = self
                    .run(&what, FindAddressBooks::new(home))
                    .await?
                    .addressbooks
                    .into_iter()
                    .map(|book| book.href)
                    .collect();
                hrefs.sort();
                hrefs.into_iter().next()
            }
            Some(ref component) => {
                let what = format!("listing the calendars in {home}");
                let mut hrefs: Vec<String> = self
                    .run(&what, FindCalendars::new(home))
                    .await?
                    .calendars
                    .into_iter()
                    .map(|calendar| calendar.href)
                    .collect();
                hrefs.sort();
                let mut found = None;
                for href in hrefs {
                    let what = format!("reading the components of {href}");
                    let supported = match self.run(&what, GetSupportedComponents::new(&href)).await
                    {
                        // none named: every component (RFC 4791, 5.2.3)
                        Ok(response) if response.components.is_empty() => true,
                        Ok(response) => response.components.contains(component),
                        Err(DavError::Status { status: 404, .. }) => true,
                        Err(e) => return Err(e),
                    };
                    if supported {
                        found = Some(href);
                        break;
                    }
                }
                found
            }
        };
        if let Some(href) = found {
            return Ok(href);
        }
        let href = format!("{home}{}/", db.as_str());
        let what = format!("creating {href}");
        match component(db) {
            None => {
                let request = CreateAddressBook::new(&href).with_display_name(db.title());
                self.run(&what, request).await?;
            }
            Some(component) => {
                let components = [component];
                let request = CreateCalendar::new(&href)
                    .with_display_name(db.title())
                    .with_components(&components);
                self.run(&what, request).await?;
            }
        }
        Ok(href)
    }

    /// RFC 6578 sync-collection: with `None`, everything in the collection; with a token from
    /// an earlier answer, what changed and what was deleted since. A token the server no
    /// longer accepts gives [`DavError::TokenInvalid`]: ask again with `None`.
    pub async fn changes(
        &self,
        collection: &str,
        token: Option<&str>,
    ) -> Result<Changes, DavError> {
        let mut request = SyncCollection::new(collection);
        if let Some(token) = token {
            request = request.with_sync_token(token);
        }
        let what = format!("listing the changes in {collection}");
        match self.run(&what, request).await {
            Ok(response) => Ok(Changes {
                token: response.new_sync_token,
                changed: response
                    .changed
                    .into_iter()
                    .filter_map(|listed| {
                        Some(Listed {
                            etag: listed.etag?,
                            href: listed.href,
                        })
                    })
                    .collect(),
                deleted: response.deleted,
            }),
            // servers that do not report the DAV:valid-sync-token precondition
            Err(DavError::Status {
                status: 409 | 412, ..
            }) if token.is_some() => Err(DavError::TokenInvalid),
            Err(e) => Err(e),
        }
    }

    /// The resources' data (multiget, at most [`FETCH_BATCH`] hrefs per request), in the
    /// server's order. A resource the server no longer has is left out.
    pub async fn fetch(
        &self,
        db: Database,
        collection: &str,
        hrefs: &[String],
    ) -> Result<Vec<Fetched>, DavError> {
        let mut fetched = Vec::with_capacity(hrefs.len());
        for batch in hrefs.chunks(FETCH_BATCH) {
            let what = format!("fetching {} resources from {collection}", batch.len());
            let resources = match db {
                Database::Contacts => {
                    let request = GetAddressBookResources::new(collection).with_hrefs(batch);
                    self.run(&what, request).await?.resources
                }
                _ => {
                    let request = GetCalendarResources::new(collection).with_hrefs(batch);
                    self.run(&what, request).await?.resources
                }
            };
            fetched.extend(resources.into_iter().filter_map(|resource| {
                let content = resource.content.ok()?;
                Some(Fetched {
                    href: resource.href,
                    etag: content.etag,
                    data: content.data,
                })
            }));
        }
        Ok(fetched)
    }

    /// Creates `name` (e.g. `"<uid>.vcf"`, `"<uid>.ics"`; percent-encoded here) in
    /// `collection` with `If-None-Match: *`. [`PutOutcome::Conflict`]: a resource of that name
    /// exists already.
    pub async fn create(
        &self,
        db: Database,
        collection: &str,
        name: &str,
        data: &str,
    ) -> Result<PutOutcome, DavError> {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('%')
            || name.chars().any(char::is_control)
        {
            return Err(DavError::BadName {
                name: name.to_owned(),
            });
        }
        let encoded = utf8_percent_encode(name, NAME).to_string();
        let href = libdav::encoding::normalise_percent_encoded(&format!("{collection}{encoded}"))
            .map_err(|e| DavError::Protocol(format!("the href of {name:?}: {e}")))?
            .into_owned();
        let request = PutResource::new(&href).create(data, content_type(db));
        let result = self.run(&format!("storing {href}"), request).await;
        self.stored(href, result).await
    }

    /// Replaces the resource at `href` with `If-Match: etag`. [`PutOutcome::Conflict`]: the
    /// server's copy changed since that etag (or is gone).
    pub async fn update(
        &self,
        db: Database,
        href: &str,
        data: &str,
        etag: &str,
    ) -> Result<PutOutcome, DavError> {
        let request = PutResource::new(href).update(data, content_type(db), etag);
        let result = self.run(&format!("replacing {href}"), request).await;
        self.stored(href.to_owned(), result).await
    }

    async fn stored(
        &self,
        href: String,
        result: Result<PutResourceResponse, DavError>,
    ) -> Result<PutOutcome, DavError> {
        match result {
            Ok(PutResourceResponse { etag: Some(etag) }) => Ok(PutOutcome::Stored { href, etag }),
            Ok(PutResourceResponse { etag: None }) => {
                let what = format!("reading the etag of {href}");
                let etag = self.run(&what, GetEtag::new(&href)).await?.etag;
                Ok(PutOutcome::Stored { href, etag })
            }
            Err(DavError::Status { status: 412, .. }) => Ok(PutOutcome::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Deletes the resource at `href`: with `If-Match: etag` when given, unconditionally
    /// without.
    pub async fn delete(
        &self,
        href: &str,
        if_match: Option<&str>,
    ) -> Result<DeleteOutcome, DavError> {
        let what = format!("deleting {href}");
        let result = match if_match {
            Some(etag) => self.run(&what, Delete::new(href).with_etag(etag)).await,
            None => self.run(&what, Delete::new(href).force()).await,
        };
        match result {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(DavError::Status { status: 404, .. }) => Ok(DeleteOutcome::Gone),
            Err(DavError::Status { status: 412, .. }) => Ok(DeleteOutcome::Conflict),
            Err(e) => Err(e),
        }
    }

    /// One libdav request within [`REQUEST_TIMEOUT`], its error in an administrator's words.
    async fn run<R>(&self, what: &str, request: R) -> Result<R::Response, DavError>
    where
        R: DavRequest,
        R::Error<HttpError>: From<http::Error>
            + From<RequestError<HttpError>>
            + From<R::ParseError>
            + Into<WebDavError<HttpError>>,
    {
        timeout(&self.url, self.dav.request(request))
            .await?
            .map_err(|e| self.error(what, e.into()))
    }

    fn error(&self, what: &str, e: WebDavError<HttpError>) -> DavError {
        match e {
            WebDavError::Request(RequestError::Client(e)) => DavError::Unreachable {
                url: self.url.clone(),
                why: chain(&e),
            },
            WebDavError::Request(RequestError::Http(e)) => {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    DavError::TooLarge {
                        what: what.to_owned(),
                        limit: MAX_RESPONSE,
                    }
                } else {
                    DavError::Unreachable {
                        url: self.url.clone(),
                        why: format!("reading the answer to {what}: {}", chain(&*e)),
                    }
                }
            }
            WebDavError::BadStatusCode(status) => self.status_error(what, status),
            WebDavError::PreconditionFailed(p)
                if p == libdav::Precondition::from(libdav::names::VALID_SYNC_TOKEN) =>
            {
                DavError::TokenInvalid
            }
            WebDavError::PreconditionFailed(p) => DavError::Forbidden {
                username: self.username.clone(),
                what: format!("{what} (precondition {p})"),
            },
            WebDavError::Xml(e) => DavError::Protocol(format!("{what}: XML: {e}")),
            WebDavError::InvalidResponse(e) => DavError::Protocol(format!("{what}: {e}")),
            WebDavError::InvalidInput(e) => bad_url_error(&self.url, &e),
        }
    }

    fn status_error(&self, what: &str, status: StatusCode) -> DavError {
        match status {
            StatusCode::UNAUTHORIZED => DavError::Unauthorized {
                username: self.username.clone(),
            },
            StatusCode::FORBIDDEN => DavError::Forbidden {
                username: self.username.clone(),
                what: what.to_owned(),
            },
            status => DavError::Status {
                status: status.as_u16(),
                what: what.to_owned(),
            },
        }
    }
}

async fn timeout<T>(url: &str, future: impl Future<Output = T>) -> Result<T, DavError> {
    tokio::time::timeout(REQUEST_TIMEOUT, future)
        .await
        .map_err(|_| DavError::Timeout {
            url: url.to_owned(),
            secs: REQUEST_TIMEOUT.as_secs(),
        })
}

fn bad_url_error(url: &str, e: &http::Error) -> DavError {
    DavError::BadUrl {
        url: url.to_owned(),
        why: format!("building a request URL: {e}"),
    }
}

/// An error and its sources, `: `-separated.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A collection path as given by configuration, in libdav's normal form with a leading and a
/// trailing slash.
fn normal_collection_href(path: &str) -> Result<String, DavError> {
    let normal = libdav::encoding::normalise_percent_encoded(path)
        .map_err(|e| DavError::Protocol(format!("the home {path:?}: {e}")))?;
    let mut href = String::with_capacity(normal.len() + 2);
    if !normal.starts_with('/') {
        href.push('/');
    }
    href.push_str(&normal);
    if !href.ends_with('/') {
        href.push('/');
    }
    Ok(href)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_in_order() {
        let names: Vec<&str> = Database::ALL.iter().map(|db| db.as_str()).collect();
        assert_eq!(names, ["calendar", "contacts", "tasks", "memos"]);
    }

    #[test]
    fn homes_are_normalised() {
        for (given, expected) in [
            ("/alice@example.com/", "/alice@example.com/"),
            ("alice%40example.com", "/alice@example.com/"),
            ("/dav/a b/", "/dav/a b/"),
        ] {
            assert_eq!(
                normal_collection_href(given).ok().as_deref(),
                Some(expected),
                "{given}"
            );
        }
        assert!(normal_collection_href("/bad%zz/").is_err());
    }
}
