//! Date and time functions (the host supplies "now": 2026-01-02T03:04:05.678Z).
mod common;
use common::*;
use serde_json::json;

#[test]
fn now_and_millis_come_from_the_host() {
    eq("$millis()", json!(NOW));
    eq("$now()", json!("2026-01-02T03:04:05.678Z"));
    eq("$now() = $now()", json!(true));
    eq("$now('[Y0001]/[M01]/[D01]')", json!("2026/01/02"));
    eq("$now('[H01]:[m01]', '+0530')", json!("08:34"));
}

#[test]
fn from_millis_iso_and_pictures() {
    eq("$fromMillis(0)", json!("1970-01-01T00:00:00.000Z"));
    eq(
        "$fromMillis(1510067557121)",
        json!("2017-11-07T15:12:37.121Z"),
    );
    eq("$fromMillis(-1)", json!("1969-12-31T23:59:59.999Z"));
    eq(
        "$fromMillis(951782400000)",
        json!("2000-02-29T00:00:00.000Z"),
    );
    eq(
        "$fromMillis(1510067557121, '[Y0001]-[M01]-[D01] [H01]:[m01]:[s01] [Z]', '-0500')",
        json!("2017-11-07 10:12:37 -05:00"),
    );
    eq(
        "$fromMillis(1510067557121, '[D1] [MNn] [Y]')",
        json!("7 November 2017"),
    );
    eq(
        "$fromMillis(1510067557121, '[FNn], [D01] [MN,*-3]')",
        json!("Tuesday, 07 NOV"),
    );
    eq(
        "$fromMillis(1510067557121, '[FNn,3-3] [D,2] [Y,*-2]')",
        json!("Tue 07 17"),
    );
    eq(
        "$fromMillis(1510067557121, '[M01]/[D01]/[Y0001] [h#1]:[m01][P]')",
        json!("11/07/2017 3:12pm"),
    );
    eq(
        "$fromMillis(1510067557121, '[h]:[m01] [P]')",
        json!("3:12 pm"),
    );
    eq("$fromMillis(1510067557121, '[Y01]-[d]')", json!("17-311"));
    eq(
        "$fromMillis(1510067557121, '[Y]-[M]-[D]T[H]:[m]:[s].[f001][Z01:01t]', '+0100')",
        json!("2017-11-7T16:12:37.121+01:00"),
    );
    undef("$fromMillis(missing)", &none());
    err("$fromMillis(0, '[Q]')", &none(), "D3135");
}

#[test]
fn to_millis_parses_iso_8601() {
    eq("$toMillis('1970-01-01T00:00:00.000Z')", json!(0));
    eq(
        "$toMillis('2017-11-07T15:12:37.121Z')",
        json!(1510067557121i64),
    );
    eq(
        "$toMillis('2017-11-07T16:12:37.121+01:00')",
        json!(1510067557121i64),
    );
    eq("$toMillis('2017-11-07')", json!(1510012800000i64));
    eq("$toMillis('2017-11-07T15:12')", json!(1510067520000i64));
    eq(
        "$toMillis('2017-11-07T15:12:37.5Z')",
        json!(1510067557500i64),
    );
    err("$toMillis('yesterday')", &none(), "D3110");
    err("$toMillis('2017-13-01')", &none(), "D3110");
    undef("$toMillis(missing)", &none());
}

#[test]
fn to_millis_with_a_picture() {
    eq(
        "$toMillis('07/11/2017', '[D01]/[M01]/[Y0001]')",
        json!(1510012800000i64),
    );
    eq(
        "$toMillis('7 November 2017 15:12', '[D] [MNn] [Y] [H]:[m]')",
        json!(1510067520000i64),
    );
    eq(
        "$toMillis('2017-11-07 3:12 pm', '[Y]-[M]-[D] [h]:[m] [P]')",
        json!(1510067520000i64),
    );
    err("$toMillis('2017', '[D01]/[M01]/[Y0001]')", &none(), "D3110");
    err("$toMillis('999999999999999999', '[Y]')", &none(), "D3110");
    err(
        "$toMillis('2017-01-01 999999999999', '[Y]-[M]-[D] [H]')",
        &none(),
        "D3110",
    );
}

#[test]
fn round_trips() {
    eq(
        "$toMillis($fromMillis(1234567890123)) = 1234567890123",
        json!(true),
    );
    eq(
        "$fromMillis($toMillis('2024-02-29T12:00:00Z'))",
        json!("2024-02-29T12:00:00.000Z"),
    );
}
