//! The parts of a request target and a Host header: path, query, authority, host.

/// The parts of a request-target: `(path, query, authority)`. Origin form (`/p?q`) has a
/// path and maybe a query; absolute form (`http://h/p?q`) adds the authority (userinfo
/// removed); authority form (`CONNECT h:443`) has only an authority; `*` is its own path.
/// The fragment is dropped.
#[allow(clippy::type_complexity)]
pub fn split_target<'a>(
    target: &'a [u8],
    method: &[u8],
) -> (Option<&'a [u8]>, Option<&'a [u8]>, Option<&'a [u8]>) {
    if method.eq_ignore_ascii_case(b"CONNECT") {
        return (None, None, Some(target));
    }
    if target == b"*" {
        return (Some(target), None, None);
    }
    let mut authority = None;
    let mut rest = target;
    if let Some(pos) = absolute_form_scheme_end(target) {
        let after = target.get(pos + 3..).unwrap_or(&[]);
        let end = after
            .iter()
            .position(|&b| b == b'/' || b == b'?' || b == b'#')
            .unwrap_or(after.len());
        let auth = after.get(..end).unwrap_or(after);
        // Strip userinfo.
        let auth = match auth.iter().rposition(|&b| b == b'@') {
            Some(at) => auth.get(at + 1..).unwrap_or(auth),
            None => auth,
        };
        authority = Some(auth);
        rest = after.get(end..).unwrap_or(&[]);
    }
    let rest = match rest.iter().position(|&b| b == b'#') {
        Some(hash) => rest.get(..hash).unwrap_or(rest),
        None => rest,
    };
    let (path, query) = match rest.iter().position(|&b| b == b'?') {
        Some(q) => (rest.get(..q).unwrap_or(rest), rest.get(q + 1..)),
        None => (rest, None),
    };
    let path: &[u8] = if path.is_empty() && authority.is_some() {
        b"/"
    } else {
        path
    };
    (Some(path), query, authority)
}

/// Where the scheme of an absolute-form target (`http://h/p`) ends, at its `://`. Only a
/// scheme at the very start counts (RFC 3986: a letter, then letters, digits, `+-.`), so an
/// origin-form target that carries a URL (`/r?to=http://x/y`) stays origin-form.
fn absolute_form_scheme_end(target: &[u8]) -> Option<usize> {
    if !target.first()?.is_ascii_alphabetic() {
        return None;
    }
    let end = target
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))?;
    target.get(end..)?.starts_with(b"://").then_some(end)
}

/// Host without port: `example.com:8080` -> `example.com`, `[::1]:80` -> `[::1]` (ECS keeps
/// the brackets of an IPv6 literal in `url.domain`); surrounding white space trimmed.
pub fn host_without_port(host: &[u8]) -> &[u8] {
    let host = host.trim_ascii();
    if host.starts_with(b"[") {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => host.get(..=end).unwrap_or(host),
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) if host.iter().filter(|&&b| b == b':').count() == 1 => {
            host.get(..colon).unwrap_or(host)
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_forms() {
        assert_eq!(
            split_target(b"http://u:p@h.example:81/a?b#c", b"GET"),
            (
                Some(&b"/a"[..]),
                Some(&b"b"[..]),
                Some(&b"h.example:81"[..])
            )
        );
        assert_eq!(
            split_target(b"http://h", b"GET"),
            (Some(&b"/"[..]), None, Some(&b"h"[..]))
        );
        assert_eq!(
            split_target(b"*", b"OPTIONS"),
            (Some(&b"*"[..]), None, None)
        );
        assert_eq!(
            split_target(b"h:443", b"CONNECT"),
            (None, None, Some(&b"h:443"[..]))
        );
        assert_eq!(
            split_target(b"/p?", b"GET"),
            (Some(&b"/p"[..]), Some(&b""[..]), None)
        );
        // A URL inside an origin-form target is not its authority.
        assert_eq!(
            split_target(b"/r?to=http://evil.example/x", b"GET"),
            (
                Some(&b"/r"[..]),
                Some(&b"to=http://evil.example/x"[..]),
                None
            )
        );
        assert_eq!(
            split_target(b"/proxy/https://h.example/p", b"GET"),
            (Some(&b"/proxy/https://h.example/p"[..]), None, None)
        );
        assert_eq!(
            split_target(b"svn+ssh://h/p", b"GET"),
            (Some(&b"/p"[..]), None, Some(&b"h"[..]))
        );
        assert_eq!(
            split_target(b"1http://h/p", b"GET"),
            (Some(&b"1http://h/p"[..]), None, None)
        );
    }

    #[test]
    fn host_port_stripping() {
        assert_eq!(host_without_port(b"a.b:80"), b"a.b");
        assert_eq!(host_without_port(b"[::1]:80"), b"[::1]");
        assert_eq!(host_without_port(b"::1"), b"::1");
        assert_eq!(host_without_port(b" a "), b"a");
        assert_eq!(host_without_port(b"[bad"), b"[bad");
    }
}
