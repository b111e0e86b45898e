//! Database URLs as libpq writes them: one host or several (`host1:5432,host2:5432`), with
//! `target_session_attrs` saying which kind of server to use. sqlx reads one host only, so a
//! URL is split here into one connection option set per host, tried in the order written.

use std::fmt;

use sqlx::postgres::PgConnectOptions;

/// Which server a connection must reach, as libpq's `target_session_attrs` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionAttrs {
    /// Any server that accepts the connection (libpq's default).
    Any,
    /// One that accepts writes: not a standby, `default_transaction_read_only` off.
    ReadWrite,
    /// One that refuses writes (a standby, or a read-only primary).
    ReadOnly,
    /// The primary: not in recovery.
    Primary,
    /// A standby: in recovery.
    Standby,
    /// A standby if one answers, else any server.
    PreferStandby,
}

impl SessionAttrs {
    const NAMES: [(&'static str, SessionAttrs); 6] = [
        ("any", SessionAttrs::Any),
        ("read-write", SessionAttrs::ReadWrite),
        ("read-only", SessionAttrs::ReadOnly),
        ("primary", SessionAttrs::Primary),
        ("standby", SessionAttrs::Standby),
        ("prefer-standby", SessionAttrs::PreferStandby),
    ];

    fn parse(value: &str) -> Result<Self, TargetError> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, attrs)| *attrs)
            .ok_or_else(|| {
                TargetError(format!(
                    "target_session_attrs {value:?} is not one of {}",
                    Self::NAMES.map(|(name, _)| name).join(", ")
                ))
            })
    }

    /// The libpq name.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, attrs)| *attrs == self)
            .map_or("any", |(name, _)| name)
    }

    /// Whether a server in this state fits. `PreferStandby` takes any (the caller tries
    /// standbys first).
    pub fn fits(self, role: ServerRole) -> bool {
        match self {
            Self::Any | Self::PreferStandby => true,
            Self::ReadWrite => !role.read_only,
            Self::ReadOnly => role.read_only,
            Self::Primary => !role.in_recovery,
            Self::Standby => role.in_recovery,
        }
    }
}

/// What a server said about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ServerRole {
    /// `pg_is_in_recovery()`: a standby.
    pub in_recovery: bool,
    /// `transaction_read_only` of a new session: writes refused.
    pub read_only: bool,
}

impl fmt::Display for ServerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.in_recovery, self.read_only) {
            (true, _) => f.write_str("a standby"),
            (false, true) => f.write_str("a read-only primary"),
            (false, false) => f.write_str("a read-write primary"),
        }
    }
}

/// A database URL that cannot be used; the message names the part at fault and never the
/// password.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TargetError(String);

/// One host of a URL, with the options to reach it. `Debug` shows the name only: the options
/// hold the password.
#[derive(Clone)]
pub(crate) struct Host {
    /// `host:port`, for messages.
    pub name: String,
    /// Everything sqlx needs to connect to it.
    pub options: PgConnectOptions,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A parsed database URL: its hosts in the order written and the kind of server wanted.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// At least one.
    pub hosts: Vec<Host>,
    /// Which of them will do.
    pub attrs: SessionAttrs,
    /// Whether the URL named `target_session_attrs` itself.
    pub attrs_given: bool,
}

impl Target {
    /// Parses `url` (`postgres://` or `postgresql://`).
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "postgres" | "postgresql"))
            .ok_or_else(|| TargetError("the URL does not start with postgres://".to_owned()))?;
        // The user info first (up to the last `@` before the query): a password may hold a
        // `/` or `:`, and must never be read as a host, nor echoed in a message.
        let (before_query, query) = match rest.split_once('?') {
            Some((before, query)) => (before, Some(query)),
            None => (rest, None),
        };
        let (userinfo, after_userinfo) = match before_query.rsplit_once('@') {
            Some((userinfo, after)) => (Some(userinfo), after),
            None => (None, before_query),
        };
        let path_start = after_userinfo.find('/').unwrap_or(after_userinfo.len());
        let (host_list, path) = after_userinfo.split_at(path_start);

        let mut attrs = SessionAttrs::Any;
        let mut attrs_given = false;
        let mut port_list: Option<Vec<String>> = None;
        let mut kept = Vec::new();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "target_session_attrs" => {
                    attrs = SessionAttrs::parse(value)?;
                    attrs_given = true;
                }
                "port" if value.contains(',') => {
                    port_list = Some(value.split(',').map(str::to_owned).collect());
                }
                _ => kept.push(pair),
            }
        }

        let entries: Vec<&str> = host_list.split(',').collect();
        if entries.len() > 1 && entries.iter().any(|entry| entry.is_empty()) {
            return Err(TargetError(format!(
                "the host list has an empty entry ({} hosts written)",
                entries.len()
            )));
        }
        if let Some(ports) = &port_list {
            if ports.len() != entries.len() {
                return Err(TargetError(format!(
                    "{} hosts and {} ports (port={}) do not pair",
                    entries.len(),
                    ports.len(),
                    ports.join(",")
                )));
            }
        }

        let mut hosts = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let (host, port) = split_port(entry, index)?;
            let port = match (&port_list, port) {
                (Some(_), Some(_)) => {
                    return Err(TargetError(format!(
                        "host {} ({entry}) has a port and port= lists ports too",
                        index + 1
                    )))
                }
                (Some(ports), None) => Some(parse_port(&ports[index], index, entry)?),
                (None, port) => port,
            };
            let mut single = format!("{scheme}://");
            if let Some(userinfo) = userinfo {
                single.push_str(userinfo);
                single.push('@');
            }
            single.push_str(host);
            if let Some(port) = port {
                single.push_str(&format!(":{port}"));
            }
            single.push_str(path);
            if !kept.is_empty() {
                single.push('?');
                single.push_str(&kept.join("&"));
            }
            // sqlx's message can quote the URL, password included: only its kind is kept.
            let options = single.parse::<PgConnectOptions>().map_err(|error| {
                TargetError(format!(
                    "host {} ({entry}): the URL cannot be read: {}",
                    index + 1,
                    error_kind(&error)
                ))
            })?;
            let name = format!("{}:{}", options.get_host(), options.get_port());
            hosts.push(Host { name, options });
        }
        Ok(Self {
            hosts,
            attrs,
            attrs_given,
        })
    }

    /// Whether this is what sqlx alone can serve: one host, no server kind asked for.
    pub(crate) fn is_plain(&self) -> bool {
        self.hosts.len() == 1 && !self.attrs_given
    }

    /// The hosts' names, as written.
    #[cfg(test)]
    pub(crate) fn names(&self) -> Vec<&str> {
        self.hosts.iter().map(|host| host.name.as_str()).collect()
    }

    /// The same, with every connection naming itself `name` to the server.
    pub(crate) fn with_application_name(mut self, name: &str) -> Self {
        for host in &mut self.hosts {
            host.options = host.options.clone().application_name(name);
        }
        self
    }
}

/// `host[:port]` or `[v6]:port`; the port when written.
fn split_port(entry: &str, index: usize) -> Result<(&str, Option<u16>), TargetError> {
    let (host, port) = if let Some(v6) = entry.strip_prefix('[') {
        match v6.split_once(']') {
            Some((_, "")) => (entry, None),
            Some((address, port)) => (
                &entry[..address.len() + 2],
                Some(port.strip_prefix(':').unwrap_or(port)),
            ),
            None => {
                return Err(TargetError(format!(
                    "host {} ({entry}) opens [ without closing it",
                    index + 1
                )))
            }
        }
    } else {
        match entry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        }
    };
    let port = port
        .map(|port| parse_port(port, index, entry))
        .transpose()?;
    Ok((host, port))
}

fn parse_port(port: &str, index: usize, entry: &str) -> Result<u16, TargetError> {
    port.parse::<u16>()
        .ok()
        .filter(|port| *port > 0)
        .ok_or_else(|| {
            TargetError(format!(
                "host {} ({entry}): port {port:?} is not a port number",
                index + 1
            ))
        })
}

/// What went wrong in sqlx's words, without echoing the URL.
fn error_kind(error: &sqlx::Error) -> &'static str {
    match error {
        sqlx::Error::Configuration(_) => "a parameter or part is not understood",
        _ => "unreadable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(url: &str) -> Vec<String> {
        Target::parse(url)
            .unwrap()
            .hosts
            .iter()
            .map(|host| host.name.clone())
            .collect()
    }

    fn refused(url: &str) -> String {
        Target::parse(url).unwrap_err().to_string()
    }

    #[test]
    fn a_single_host_url_is_plain_and_reaches_that_host() {
        let target = Target::parse("postgres://u:secret@db.example:6543/chronicle").unwrap();
        assert!(target.is_plain());
        assert_eq!(target.names(), ["db.example:6543"]);
        assert_eq!(target.hosts[0].options.get_database(), Some("chronicle"));
        assert_eq!(target.hosts[0].options.get_username(), "u");
    }

    #[test]
    fn hosts_are_kept_in_order_each_with_its_own_port_and_the_shared_rest() {
        let target = Target::parse(
            "postgresql://u@h1:5432,h2,[::1]:5434/db?sslmode=disable&target_session_attrs=read-write",
        )
        .unwrap();
        assert!(!target.is_plain());
        assert_eq!(target.attrs, SessionAttrs::ReadWrite);
        assert_eq!(target.names(), ["h1:5432", "h2:5432", "[::1]:5434"]);
        for host in &target.hosts {
            assert_eq!(host.options.get_database(), Some("db"));
            assert_eq!(host.options.get_username(), "u");
        }
    }

    #[test]
    fn a_port_list_pairs_with_the_hosts() {
        assert_eq!(
            names("postgres://u@a,b/db?port=5433,5434"),
            ["a:5433", "b:5434"]
        );
        assert!(refused("postgres://u@a,b,c/db?port=5433,5434").contains("3 hosts and 2 ports"));
        assert!(refused("postgres://u@a:1,b/db?port=5433,5434").contains("host 1 (a:1)"));
    }

    #[test]
    fn every_libpq_kind_is_understood_and_anything_else_refused_by_name() {
        for (name, attrs) in SessionAttrs::NAMES {
            let target =
                Target::parse(&format!("postgres://u@a/db?target_session_attrs={name}")).unwrap();
            assert_eq!(target.attrs, attrs);
            assert_eq!(attrs.name(), name);
            assert!(!target.is_plain(), "{name} asks for a check");
        }
        let message = refused("postgres://u@a,b/db?target_session_attrs=leader");
        assert!(message.contains("\"leader\""), "{message}");
        assert!(message.contains("prefer-standby"), "{message}");
    }

    #[test]
    fn a_bad_port_is_named_without_the_password() {
        let message = refused("postgres://u:hunter2@a:5432,b:54x2/db");
        assert!(message.contains("host 2 (b:54x2)"), "{message}");
        assert!(message.contains("\"54x2\""), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(refused("postgres://u@a,,b/db").contains("empty entry"));
        // A password is never taken for a host, nor shown: encoded as URLs need it, or not.
        let target = Target::parse("postgres://u:se%2Fcr%3Aet@h1:5432,h2/db").unwrap();
        assert_eq!(target.names(), ["h1:5432", "h2:5432"]);
        assert!(!format!("{target:?}").contains("cr%3Aet"));
        let message = refused("postgres://u:se/cr:et@h1:5432,h2/db");
        assert!(
            !message.contains("cr:et") && message.contains("host 1 (h1:5432)"),
            "{message}"
        );
        let message = refused("postgres://u:p/a:ss@h1:5432,h2:x/db");
        assert!(
            !message.contains("a:ss") && !message.contains("p/a"),
            "{message}"
        );
        assert!(refused("mysql://u@a/db").contains("postgres://"));
    }

    #[test]
    fn roles_fit_the_kinds_as_libpq_decides() {
        let primary = ServerRole {
            in_recovery: false,
            read_only: false,
        };
        let standby = ServerRole {
            in_recovery: true,
            read_only: true,
        };
        let read_only_primary = ServerRole {
            in_recovery: false,
            read_only: true,
        };
        assert!(SessionAttrs::ReadWrite.fits(primary));
        assert!(!SessionAttrs::ReadWrite.fits(standby));
        assert!(!SessionAttrs::ReadWrite.fits(read_only_primary));
        assert!(SessionAttrs::Primary.fits(read_only_primary));
        assert!(!SessionAttrs::Primary.fits(standby));
        assert!(SessionAttrs::Standby.fits(standby));
        assert!(SessionAttrs::ReadOnly.fits(read_only_primary));
        assert!(!SessionAttrs::ReadOnly.fits(primary));
        assert!(SessionAttrs::Any.fits(standby) && SessionAttrs::PreferStandby.fits(primary));
    }
}
