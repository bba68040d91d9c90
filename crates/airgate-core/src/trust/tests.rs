use super::*;

const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIDPZcwnLx6+3AHIs1tZ0d0Xx6nWcWwWUmQ7sfQrf3Zbf";

fn key_bytes() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .unwrap_or_default()
}

#[test]
fn allowed_signers_lines_parse_as_ssh_keygen_reads_them() {
    let text = format!(
        "# comment\n\n\
         alice@corp.example ssh-ed25519 {KEY} alice laptop\n\
         \"bob@corp.example,*@release.example\" namespaces=\"git,file\",valid-after=\"20260101Z\",valid-before=\"20270101120000Z\" ssh-ed25519 {KEY}\n"
    );
    let signers = AllowedSigners::parse(&text).unwrap_or_default();
    assert_eq!(signers.lines.len(), 2);
    let (a, b) = (&signers.lines[0], &signers.lines[1]);
    assert_eq!((a.line, a.principals.as_str()), (3, "alice@corp.example"));
    assert_eq!(a.namespaces, None);
    assert_eq!(a.key, key_bytes());
    assert_eq!(b.line, 4);
    assert_eq!(b.principals, "bob@corp.example,*@release.example");
    assert_eq!(b.namespaces.as_deref(), Some("git,file"));
    assert_eq!(b.valid_after, Some(1_767_225_600));
    assert_eq!(b.valid_before, Some(1_798_804_800));
}

#[test]
fn lines_airgate_cannot_honour_are_refused_with_their_number() {
    let cases = [
        (
            format!("a@x cert-authority ssh-ed25519 {KEY}"),
            "line 1: cert-authority is not supported",
        ),
        (
            format!("a@x ssh-dss {KEY}"),
            "line 1: 'ssh-dss' is not a key type",
        ),
        (
            format!("a@x unknown=\"1\" ssh-ed25519 {KEY}"),
            "line 1: unknown option 'unknown=\"1\"'",
        ),
        (
            format!("a@x valid-after=\"2026\" ssh-ed25519 {KEY}"),
            "line 1: '2026' is not a time",
        ),
        (
            "a@x ssh-ed25519 !!!".to_string(),
            "line 1: the key is not base64",
        ),
    ];
    for (text, want) in cases {
        let got = AllowedSigners::parse(&text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            got.starts_with(&format!("allowed_signers {want}")),
            "{text}: {got}"
        );
    }
}

#[test]
fn a_principal_is_the_committers_email_matched_against_the_lines_patterns() {
    let text = format!(
        "alice@corp.example ssh-ed25519 {KEY}\n\
         *@release.example,!mallory@release.example namespaces=\"git\" ssh-ed25519 {KEY}\n\
         carol@corp.example namespaces=\"file\" ssh-ed25519 {KEY}\n\
         dave@corp.example valid-after=\"20260101Z\",valid-before=\"20260201Z\" ssh-ed25519 {KEY}\n"
    );
    let signers = AllowedSigners::parse(&text).unwrap_or_default();
    let jan15 = 1_768_435_200; // 2026-01-15
    let key = key_bytes();
    type Case<'a> = (&'a str, &'a str, i64, Option<Result<&'a str, LineMismatch>>);
    let cases: &[Case] = &[
        (
            "alice@corp.example",
            "git",
            jan15,
            Some(Ok("alice@corp.example")),
        ),
        (
            "eve@release.example",
            "git",
            jan15,
            Some(Ok("eve@release.example")),
        ),
        (
            "mallory@release.example",
            "git",
            jan15,
            Some(Err(LineMismatch::Principal)),
        ),
        (
            "ALICE@corp.example",
            "git",
            jan15,
            Some(Err(LineMismatch::Principal)),
        ),
        (
            "carol@corp.example",
            "git",
            jan15,
            Some(Err(LineMismatch::Namespace)),
        ),
        (
            "eve@release.example",
            "file",
            jan15,
            Some(Err(LineMismatch::Namespace)),
        ),
        (
            "dave@corp.example",
            "git",
            jan15,
            Some(Ok("dave@corp.example")),
        ),
        (
            "dave@corp.example",
            "git",
            jan15 + 40 * 86_400,
            Some(Err(LineMismatch::Validity)),
        ),
        (
            "dave@corp.example",
            "git",
            jan15 - 40 * 86_400,
            Some(Err(LineMismatch::Validity)),
        ),
        (
            "nobody@corp.example",
            "git",
            jan15,
            Some(Err(LineMismatch::Principal)),
        ),
    ];
    for (email, ns, time, want) in cases {
        let got = signers.principal_for(&key, email, ns, *time);
        let got = got
            .as_ref()
            .map(|r| r.as_ref().map(String::as_str).map_err(|e| *e));
        assert_eq!(got, *want, "{email} {ns} {time}");
    }
    assert_eq!(
        signers.principal_for(b"other", "alice@corp.example", "git", jan15),
        None
    );
}

#[test]
fn patterns_follow_ssh_match_pattern_list() {
    let cases = [
        ("a@x", "a@x", true),
        ("a@x", "b@x,a@x", true),
        ("a@x", "*@x", true),
        ("a@x", "?@x", true),
        ("ab@x", "?@x", false),
        ("a@x", "*,!a@x", false),
        ("a@x", "!b@x", false),
        ("a@x.y", "*@x", false),
        ("", "*", true),
    ];
    for (s, p, want) in cases {
        assert_eq!(match_list(s, p), want, "{s} against {p}");
    }
}

#[test]
fn times_read_as_utc_with_or_without_z() {
    let cases = [
        ("19700101", Ok(0)),
        ("19700101Z", Ok(0)),
        ("197001010001", Ok(60)),
        ("20000229235959Z", Ok(951_868_799)),
        ("20261301", Err(())),
        ("2026010", Err(())),
        ("2026-01-01", Err(())),
    ];
    for (s, want) in cases {
        assert_eq!(parse_time(s).map_err(|_| ()), want, "{s}");
    }
}

#[test]
fn trailers_are_the_last_paragraph_when_every_line_is_one() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("subject only", &[]),
        ("Ticket: T-1", &[]),
        ("subject\n\nTicket: T-1\n", &[("Ticket", "T-1")]),
        (
            "subject\n\nbody text\n\nTicket: T-1\nReviewed-by: A <a@x>\n",
            &[("Ticket", "T-1"), ("Reviewed-by", "A <a@x>")],
        ),
        ("subject\n\nTicket: T-1\nnot a trailer\n", &[]),
        ("subject\n\nTicket: T-1\n\nmore body\n", &[]),
        ("subject\n\nTicket: a\n  b\n", &[("Ticket", "a b")]),
        ("subject\n\nBad Token: x\n", &[]),
        ("subject\n\nTicket: T-1\n---\ndiff\n", &[("Ticket", "T-1")]),
    ];
    for (message, want) in cases {
        let got = trailers(message);
        let got: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(got, *want, "{message:?}");
    }
}

fn commit(
    id: &str,
    result: TrustResult,
    principal: &str,
    trailers: &[(&str, &str)],
) -> CommitTrust {
    CommitTrust {
        commit: id.to_string(),
        tag: None,
        result,
        signer: (result != TrustResult::Unsigned).then(|| Signer {
            principal: principal.to_string(),
            key_type: "ssh-ed25519".into(),
            fingerprint: format!("SHA256:{principal}"),
        }),
        committer: principal.to_string(),
        detail: String::new(),
        trailers: trailers
            .iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect(),
    }
}

#[test]
fn the_verdict_over_a_range() {
    use TrustResult::*;
    let history = |n: u32, trailers: &[&str]| TrustPolicy {
        mode: VerifyMode::History,
        min_distinct_signers: n,
        require_trailers: trailers.iter().map(|t| t.to_string()).collect(),
    };
    let head_only = TrustPolicy {
        mode: VerifyMode::Head,
        ..TrustPolicy::default()
    };
    let rel = commit("m1", Good, "rel@x", &[("Ticket", "T-1")]);
    let dev = commit("d1", Good, "dev@x", &[]);
    let dev2 = commit("d2", Good, "DEV@x", &[]);
    let unsigned = commit("u1", Unsigned, "dev@x", &[]);
    type Case<'a> = (
        &'a str,
        TrustPolicy,
        CommitTrust,
        Vec<CommitTrust>,
        Result<usize, &'a str>,
    );
    let cases: Vec<Case> = vec![
        ("one good head", history(0, &[]), dev.clone(), vec![], Ok(1)),
        (
            "unsigned head",
            history(0, &[]),
            unsigned.clone(),
            vec![],
            Err("commit u1 by dev@x: unsigned"),
        ),
        (
            "unsigned in range",
            history(1, &[]),
            rel.clone(),
            vec![unsigned.clone()],
            Err("commit u1 by dev@x: unsigned"),
        ),
        (
            "head mode ignores the range",
            head_only,
            rel.clone(),
            vec![unsigned.clone()],
            Ok(1),
        ),
        (
            "two-person rule met",
            history(2, &["Ticket"]),
            rel.clone(),
            vec![dev.clone()],
            Ok(2),
        ),
        (
            "a developer alone",
            history(2, &["Ticket"]),
            dev.clone(),
            vec![],
            Err(
                "1 distinct allowed signer(s) over the range (dev@x), 2 needed; commit d1 lacks the required trailer(s) Ticket",
            ),
        ),
        (
            "one person twice is one signer",
            history(2, &[]),
            dev.clone(),
            vec![dev2.clone()],
            Err("1 distinct allowed signer(s)"),
        ),
        (
            "trailer names are case-insensitive",
            history(1, &["ticket"]),
            rel.clone(),
            vec![],
            Ok(1),
        ),
        (
            "trailer missing",
            history(1, &["Ticket"]),
            dev.clone(),
            vec![],
            Err("commit d1 lacks the required trailer(s) Ticket"),
        ),
        (
            "revoked key named with its fingerprint",
            history(1, &[]),
            commit("r1", RevokedKey, "dev@x", &[]),
            vec![],
            Err("commit r1 by dev@x signed with ssh-ed25519 key SHA256:dev@x: revoked-key"),
        ),
    ];
    for (name, policy, head, range, want) in cases {
        let got = judge(&policy, &head, &range);
        match (got, want) {
            (Ok(v), Ok(n)) => assert_eq!(v.signers.len(), n, "{name}"),
            (Err(r), Err(text)) => assert!(r.to_string().starts_with(text), "{name}: {r}"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn records_keep_the_known_and_the_required_trailers() {
    let message =
        "subject\n\nTicket: T-9\nRollback: revert\nSigned-off-by: a <a@x>\nChange-Id: I1\n";
    let kept = recorded_trailers(message, &["Rollback".to_string()]);
    let names: Vec<&str> = kept.keys().map(String::as_str).collect();
    assert_eq!(names, ["Change-Id", "Rollback", "Ticket"]);
}
