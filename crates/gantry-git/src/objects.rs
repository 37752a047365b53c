//! Reading a bare mirror without starting `git`: whether an object is there,
//! what a branch points to, and a commit stored as a loose object.
//!
//! Every `git` process costs one to three milliseconds of start-up, and the
//! source action used to start four of them for each webhook before the
//! build could begin. These lookups answer the common cases in-process and
//! say "don't know" (`None`) for everything else — a packed commit, an
//! unusual ref, an encoding header, a file that does not parse — so the
//! caller falls back to the `git` command and the answer never differs from
//! git's.
//!
//! Formats read (all documented in git's `Documentation/gitformat-*`):
//! loose objects (`objects/ab/cdef...`, zlib of `<type> <size>\0<body>`),
//! pack index version 2 (`objects/pack/*.idx`: magic, fan-out table, sorted
//! ids), loose refs and `packed-refs`.

use std::io::Read;
use std::path::Path;

use crate::commit::Commit;
use crate::input::check_branch;

/// Largest loose commit read in-process; a bigger one goes to `git show`.
const MAX_COMMIT_BYTES: u64 = 1 << 20;

/// Whether the object `id` (lowercase hex) is in the repository at
/// `git_dir`: `Some(true)` when found loose or in a pack index,
/// `Some(false)` when neither holds it and every index was readable, `None`
/// when something could not be read (ask git).
pub(crate) fn has_object(git_dir: &Path, id: &str) -> Option<bool> {
    let raw = hex::decode(id).ok()?;
    if !matches!(raw.len(), 20 | 32) {
        return None;
    }
    let objects = git_dir.join("objects");
    // Alternates would make "not here" wrong; mirrors have none, but a
    // repository that does is left to git.
    if objects.join("info/alternates").exists() {
        return None;
    }
    if objects.join(&id[..2]).join(&id[2..]).is_file() {
        return Some(true);
    }
    let packs = match std::fs::read_dir(objects.join("pack")) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    for entry in packs {
        let path = entry.ok()?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("idx") {
            continue;
        }
        // Read piecewise: a big repository's index is tens of megabytes,
        // and a lookup needs its fan-out table and a few ids.
        let file = std::fs::File::open(&path).ok()?;
        let read_at = |at: usize, buf: &mut [u8]| {
            std::os::unix::fs::FileExt::read_exact_at(&file, buf, u64::try_from(at).ok()?).ok()
        };
        if index_contains(read_at, &raw)? {
            return Some(true);
        }
    }
    Some(false)
}

/// Looks `id` up in a version-2 pack index read through `read_at` (fills
/// the buffer from an offset, `None` past the end); `None` when the file is
/// not such an index.
fn index_contains(read_at: impl Fn(usize, &mut [u8]) -> Option<()>, id: &[u8]) -> Option<bool> {
    let mut header = [0u8; 8 + 256 * 4];
    read_at(0, &mut header)?;
    if header[..4] != *b"\xfftOc" || header[4..8] != [0, 0, 0, 2] {
        return None;
    }
    let fanout = |i: usize| -> Option<usize> {
        let at = 8 + i * 4;
        let bytes: [u8; 4] = header.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_be_bytes(bytes)).ok()
    };
    let total = fanout(255)?;
    let first = usize::from(*id.first()?);
    let (mut lo, mut hi) = (
        if first == 0 { 0 } else { fanout(first - 1)? },
        fanout(first)?,
    );
    if lo > hi || hi > total {
        return None;
    }
    let width = id.len();
    let names = header.len();
    let mut name = vec![0u8; width];
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        read_at(names + mid * width, &mut name)?;
        match name.as_slice().cmp(id) {
            std::cmp::Ordering::Equal => return Some(true),
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
        }
    }
    Some(false)
}

/// The commit id `refs/heads/<branch>` holds, from its loose ref file or
/// `packed-refs`; `None` when neither answers plainly (a symbolic ref, a
/// reftable repository, a ref that is missing).
pub(crate) fn read_branch(git_dir: &Path, branch: &str) -> Option<String> {
    check_branch(branch).ok()?;
    let name = format!("refs/heads/{branch}");
    match std::fs::read_to_string(git_dir.join(&name)) {
        Ok(text) => return plain_id(text.trim_end_matches('\n')),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    let packed = std::fs::read_to_string(git_dir.join("packed-refs")).ok()?;
    packed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('^'))
        .find_map(|line| {
            let (id, ref_name) = line.split_once(' ')?;
            (ref_name == name).then(|| plain_id(id)).flatten()
        })
}

fn plain_id(text: &str) -> Option<String> {
    let ok = matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| text.to_ascii_lowercase())
}

/// Reads commit `id` when it is a loose object, as `git show -s` with
/// [`COMMIT_FORMAT`](crate::commit::COMMIT_FORMAT) would print it; `None`
/// for a packed commit or anything git would render differently (an
/// `encoding` header, a name or message that is not UTF-8).
pub(crate) fn read_loose_commit(git_dir: &Path, id: &str) -> Option<Commit> {
    if id.len() < 3 {
        return None;
    }
    let path = git_dir.join("objects").join(&id[..2]).join(&id[2..]);
    let file = std::fs::File::open(path).ok()?;
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(file)
        .take(MAX_COMMIT_BYTES)
        .read_to_end(&mut raw)
        .ok()?;
    let nul = raw.iter().position(|b| *b == 0)?;
    let header = std::str::from_utf8(&raw[..nul]).ok()?;
    let size: usize = header.strip_prefix("commit ")?.parse().ok()?;
    let body = &raw[nul + 1..];
    if body.len() != size {
        return None;
    }
    parse_commit_object(id, std::str::from_utf8(body).ok()?)
}

/// The fields of a commit object's text (`tree`, `parent`s, `author`,
/// `committer`, other headers, a blank line, the message).
fn parse_commit_object(id: &str, text: &str) -> Option<Commit> {
    let (headers, message) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut author = None;
    let mut committer = None;
    for line in headers.lines() {
        // Continuation lines (a signature's) start with a space.
        if line.starts_with(' ') {
            continue;
        }
        let (key, value) = line.split_once(' ')?;
        match key {
            "author" => author = Some(parse_person(value)?),
            "committer" => committer = Some(parse_person(value)?),
            // git re-encodes such a message to UTF-8: leave it to git.
            "encoding" => return None,
            _ => {}
        }
    }
    let (author_name, author_email, author_time) = author?;
    let (_, _, committer_time) = committer?;
    Some(Commit {
        id: id.to_owned(),
        branch: None,
        author_date: utc_timestamp(author_time),
        author_name,
        author_email,
        committer_date: utc_timestamp(committer_time),
        message: message.trim_end_matches('\n').to_owned(),
    })
}

/// `Name <email> 1714566896 +0200` → (name, email, seconds since the epoch).
fn parse_person(value: &str) -> Option<(String, String, i64)> {
    let open = value.rfind('<')?;
    let close = open + value[open..].find('>')?;
    let name = value[..open].trim_end().to_owned();
    let email = value[open + 1..close].to_owned();
    let mut rest = value[close + 1..].split_whitespace();
    let seconds = rest.next()?.parse().ok()?;
    Some((name, email, seconds))
}

/// Seconds since the epoch as `2024-05-01T12:34:56Z` (UTC, CodePipeline's
/// form; what `--date=format-local:%Y-%m-%dT%H:%M:%SZ` with `TZ=UTC` prints).
pub(crate) fn utc_timestamp(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(1_714_566_896), "2024-05-01T12:34:56Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(-1), "1969-12-31T23:59:59Z");
        assert_eq!(utc_timestamp(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn commit_objects_parse_like_git_show() {
        let text = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
parent 1111111111111111111111111111111111111111\n\
author Ada Lovelace <ada@example.com> 1714566896 +0200\n\
committer Bob <bob@example.com> 1714570000 -0500\n\
gpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n -----END PGP SIGNATURE-----\n\
\n\
Subject line\n\nBody\n\n";
        let c = parse_commit_object("abc", text).expect("parses");
        assert_eq!(c.author_name, "Ada Lovelace");
        assert_eq!(c.author_email, "ada@example.com");
        assert_eq!(c.author_date, "2024-05-01T12:34:56Z");
        assert_eq!(c.committer_date, "2024-05-01T13:26:40Z");
        assert_eq!(c.message, "Subject line\n\nBody");
    }

    #[test]
    fn commits_git_would_re_encode_are_left_to_git() {
        let text =
            "tree x\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\nencoding ISO-8859-1\n\nm\n";
        assert_eq!(parse_commit_object("abc", text), None);
        assert_eq!(parse_commit_object("abc", "tree x\n\nno author\n"), None);
    }

    #[test]
    fn pack_indexes_are_searched_and_garbage_is_refused() {
        let ids: Vec<[u8; 20]> = [0x00u8, 0x10, 0x10, 0xff]
            .iter()
            .enumerate()
            .map(|(i, first)| {
                let mut id = [i as u8; 20];
                id[0] = *first;
                id
            })
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        let mut index = b"\xfftOc\0\0\0\x02".to_vec();
        for byte in 0..=255u8 {
            let count = sorted.iter().filter(|id| id[0] <= byte).count() as u32;
            index.extend(count.to_be_bytes());
        }
        for id in &sorted {
            index.extend(id);
        }
        let reader = |bytes: &[u8]| {
            let bytes = bytes.to_vec();
            move |at: usize, buf: &mut [u8]| {
                buf.copy_from_slice(bytes.get(at..at + buf.len())?);
                Some(())
            }
        };
        for id in &ids {
            assert_eq!(index_contains(reader(&index), id), Some(true));
        }
        assert_eq!(index_contains(reader(&index), &[0x10; 20]), Some(false));
        assert_eq!(index_contains(reader(&index), &[0x80; 20]), Some(false));
        assert_eq!(index_contains(reader(b"not an index"), &[0; 20]), None);
        assert_eq!(index_contains(reader(&index[..100]), &[0xff; 20]), None);
    }
}
