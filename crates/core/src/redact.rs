//! Hiding the password in a URL shown to a user (an error, a listing, a
//! log), whether or not the URL parses.
//!
//! A URL's user info runs from `://` to the *last* `@` before the query: a
//! password that holds an unescaped `/`, `#`, `?` or `@` makes a URL parser
//! read part of it as a port, path or fragment (and fail, or succeed with
//! the secret elsewhere), so this works on the text, not on a parse. An `@`
//! in a query parameter (`?prefix=me@work`, `?password=S3cr@t`) ends no
//! user info: the query starts at the first `?` that a `=` follows before
//! the next `@`, and that follows a host, port and path with no user info
//! (`h:6379/0?`, not `u:pa?`). (A password of digits, then `?`, `=` and
//! `@` unescaped, as in `u:12?a=b@h`, reads as a port and a query;
//! percent-encoded, as a URL wants it, it is hidden.)

/// `url` without the password of its user info (`scheme://user@rest`),
/// or `url` itself when it holds none.
///
/// A password followed, anywhere later, by another `@` (as in
/// `u:ab@cd?S3CR3T=1@h`) leaves in doubt where the password ends: all of
/// the URL after its scheme is hidden then (`redis://…`).
pub fn url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some(at) = user_info_end(rest) else {
        return url.to_owned();
    };
    let Some((user, _password)) = rest[..at].split_once(':') else {
        return url.to_owned();
    };
    let after = &rest[at + 1..];
    if after.contains('@') {
        return format!("{scheme}://…");
    }
    format!("{scheme}://{user}@{after}")
}

/// The user info of `url` as its text shows it (from `://` to the last `@`
/// before the query, found as [`url_password`] finds it), and what follows
/// that `@`; `None` when the URL has no user info. A URL parser may take a
/// shorter user info (it ends one at the first `/`, `?` or `#`): comparing
/// the two tells whether part of a password would be read as a host, path
/// or query.
pub fn url_user_info(url: &str) -> Option<(&str, &str)> {
    let (_scheme, rest) = url.split_once("://")?;
    let at = user_info_end(rest)?;
    Some((&rest[..at], &rest[at + 1..]))
}

/// Where the user info of `rest` (a URL after its `://`) ends: its last
/// `@` before the query, if any.
fn user_info_end(rest: &str) -> Option<usize> {
    let mut query = rest.len();
    let mut from = 0;
    while let Some(q) = rest[from..].find('?').map(|q| from + q) {
        let pair_end = rest[q..].find('@').map_or(rest.len(), |at| q + at);
        if rest[q..pair_end].contains('=') && (rest[..q].contains('@') || is_host(&rest[..q])) {
            query = q;
            break;
        }
        from = q + 1;
    }
    rest[..query].rfind('@')
}

/// Whether `before` (what precedes a `?`, no `@` in it) reads as a host,
/// an optional port of digits, and an optional path: were it user info,
/// what follows its `:` would be a password.
fn is_host(before: &str) -> bool {
    let authority = before.split('/').next().unwrap_or_default();
    // An IPv6 literal's colons are inside its brackets.
    let after_host = match authority.rfind(']') {
        Some(end) => &authority[end + 1..],
        None => authority,
    };
    match after_host.rsplit_once(':') {
        Some((_, port)) => port.bytes().all(|b| b.is_ascii_digit()),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::url_password;

    #[test]
    fn a_password_is_hidden_whatever_it_holds() {
        for (url, shown) in [
            ("redis://:pw@127.0.0.1:1/0", "redis://@127.0.0.1:1/0"),
            (
                "redis://alice:pw@h/0?prefix=p:",
                "redis://alice@h/0?prefix=p:",
            ),
            ("redis://:SECRETa/b@127.0.0.1:1/0", "redis://@127.0.0.1:1/0"),
            ("redis://:SECRETa#b@127.0.0.1:1/0", "redis://@127.0.0.1:1/0"),
            ("redis://:SECRET@b@[::1:1/0", "redis://@[::1:1/0"),
            (
                "postgres://u:SECRET%zz@h/db?table=t",
                "postgres://u@h/db?table=t",
            ),
            ("postgres://u:1234/5@h:5432/db", "postgres://u@h:5432/db"),
            ("redis://:SECRETa?b@h/0?prefix=p", "redis://@h/0?prefix=p"),
            ("redis://u:SECRET@h/0?prefix=me@work", "redis://…"),
            ("redis://u:ab@cd?SECRET=1@127.0.0.1:9/0", "redis://…"),
            ("s3://u:ab@cd?SECRET=1@bucket/prefix", "s3://…"),
            (
                "redis://u:SECRETpa?ss=x@127.0.0.1:1/0",
                "redis://u@127.0.0.1:1/0",
            ),
            ("redis://:SECRET?a=b@[::1]:1/0", "redis://@[::1]:1/0"),
        ] {
            assert_eq!(url_password(url), shown, "{url}");
            assert!(!url_password(url).contains("SECRET"), "{url}");
        }
    }

    #[test]
    fn a_url_without_a_password_is_shown_as_it_is() {
        for url in [
            "s3://bucket/p",
            "redis://h:1/0",
            "redis://alice@h/0",
            "redis://127.0.0.1:6379/0?prefix=me@work",
            "redis://[::1]:6379/0?prefix=me@work",
            "redis://h/0?password=S3cr@t",
            "redis://h:1/0?db=1&x@y",
            "no-scheme",
        ] {
            assert_eq!(url_password(url), url);
        }
    }
}
