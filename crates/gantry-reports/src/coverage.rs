//! XML coverage formats: Clover (`CLOVERXML`), Cobertura (`COBERTURAXML`)
//! and JaCoCo (`JACOCOXML`). Totals come from the report's own summary
//! figures when it has them, otherwise from adding up its files.

use std::collections::BTreeMap;

use crate::ReportError;
use crate::model::{CoverageReport, FileCoverage};
use crate::xml::Element;

fn wrong(format: &'static str, expected: &'static str, root: &Element) -> ReportError {
    ReportError::WrongFormat {
        format,
        expected,
        found: format!("<{}>", root.name),
    }
}

/// Clover: `<coverage><project><metrics statements= coveredstatements=
/// conditionals= coveredconditionals=/>` and a `<file>` per source file,
/// directly in the project or inside `<package>`s. Statements are the lines.
pub(crate) fn clover(root: &Element) -> Result<CoverageReport, ReportError> {
    if root.name != "coverage" {
        return Err(wrong("CLOVERXML", "<coverage>", root));
    }
    let Some(project) = root.child("project") else {
        return Err(wrong("CLOVERXML", "<coverage><project>", root));
    };
    let mut files = Vec::new();
    let mut add = |file: &Element| files.push(clover_file(file));
    for child in &project.children {
        match child.name.as_str() {
            "file" => add(child),
            "package" => child.children_named("file").for_each(&mut add),
            _ => {}
        }
    }
    match project.child("metrics") {
        Some(m) => {
            let (lines, branches) = clover_metrics(m);
            Ok(CoverageReport::from_totals(lines, Some(branches), files))
        }
        None => Ok(CoverageReport::from_files(files)),
    }
}

/// `((covered, missed) statements, (covered, missed) conditionals)`.
fn clover_metrics(m: &Element) -> ((u64, u64), (u64, u64)) {
    let covered_stmts = m.count("coveredstatements");
    let covered_conds = m.count("coveredconditionals");
    (
        (
            covered_stmts,
            m.count("statements").saturating_sub(covered_stmts),
        ),
        (
            covered_conds,
            m.count("conditionals").saturating_sub(covered_conds),
        ),
    )
}

fn clover_file(file: &Element) -> FileCoverage {
    let path = file
        .attr("path")
        .or(file.attr("name"))
        .unwrap_or("")
        .to_string();
    let ((lc, lm), (bc, bm)) = match file.child("metrics") {
        Some(m) => clover_metrics(m),
        None => {
            // No metrics: count the <line> elements ourselves.
            let (mut lines, mut branches) = ((0, 0), (0, 0));
            for line in file.children_named("line") {
                match line.attr("type") {
                    Some("cond") => {
                        for side in ["truecount", "falsecount"] {
                            if line.count(side) > 0 {
                                branches.0 += 1;
                            } else {
                                branches.1 += 1;
                            }
                        }
                    }
                    Some("stmt") => {
                        if line.count("count") > 0 {
                            lines.0 += 1;
                        } else {
                            lines.1 += 1;
                        }
                    }
                    _ => {}
                }
            }
            (lines, branches)
        }
    };
    let measured = bc + bm > 0;
    FileCoverage {
        path,
        lines_covered: lc,
        lines_missed: lm,
        branches_covered: measured.then_some(bc),
        branches_missed: measured.then_some(bm),
    }
}

/// Cobertura: `<coverage lines-covered= lines-valid= branches-covered=
/// branches-valid=>` and `<class filename=>` elements with `<line number=
/// hits= branch= condition-coverage="50% (1/2)">`. Classes sharing a file
/// are merged; a line is covered when any class says so.
pub(crate) fn cobertura(root: &Element) -> Result<CoverageReport, ReportError> {
    if root.name != "coverage" {
        return Err(wrong("COBERTURAXML", "<coverage>", root));
    }
    // file -> line number -> (hit, branches covered, branches total)
    let mut by_file: BTreeMap<&str, BTreeMap<u64, (bool, u64, u64)>> = BTreeMap::new();
    for packages in root.children_named("packages") {
        for package in packages.children_named("package") {
            for classes in package.children_named("classes") {
                for class in classes.children_named("class") {
                    let lines = by_file
                        .entry(class.attr("filename").unwrap_or(""))
                        .or_default();
                    for line in class
                        .children_named("lines")
                        .flat_map(|l| l.children_named("line"))
                    {
                        let entry = lines.entry(line.count("number")).or_default();
                        entry.0 |= line.count("hits") > 0;
                        if line.attr("branch") == Some("true")
                            && let Some((c, t)) = line.attr("condition-coverage").and_then(fraction)
                        {
                            entry.1 = entry.1.max(c.min(t));
                            entry.2 = entry.2.max(t);
                        }
                    }
                }
            }
        }
    }
    let files: Vec<FileCoverage> = by_file
        .into_iter()
        .map(|(path, lines)| {
            let covered = lines.values().filter(|l| l.0).count() as u64;
            let (bc, bt) = lines.values().fold((0, 0), |(c, t), l| (c + l.1, t + l.2));
            FileCoverage {
                path: path.to_string(),
                lines_covered: covered,
                lines_missed: lines.len() as u64 - covered,
                branches_covered: (bt > 0).then_some(bc),
                branches_missed: (bt > 0).then_some(bt - bc),
            }
        })
        .collect();
    if root.attr("lines-valid").is_some() {
        let lc = root.count("lines-covered");
        let bc = root.count("branches-covered");
        let lines = (lc, root.count("lines-valid").saturating_sub(lc));
        let branches = (bc, root.count("branches-valid").saturating_sub(bc));
        Ok(CoverageReport::from_totals(lines, Some(branches), files))
    } else {
        Ok(CoverageReport::from_files(files))
    }
}

/// `"50% (1/2)"` → `(1, 2)`.
fn fraction(text: &str) -> Option<(u64, u64)> {
    let inner = text.split_once('(')?.1.split_once(')')?.0;
    let (c, t) = inner.split_once('/')?;
    Some((c.trim().parse().ok()?, t.trim().parse().ok()?))
}

/// JaCoCo: `<report>` with `<counter type="LINE|BRANCH" missed= covered=>`
/// at the report level, and per `<package>/<sourcefile>` (packages may sit
/// inside `<group>`s).
pub(crate) fn jacoco(root: &Element) -> Result<CoverageReport, ReportError> {
    if root.name != "report" {
        return Err(wrong("JACOCOXML", "<report>", root));
    }
    let mut files = Vec::new();
    jacoco_walk(root, &mut files);
    let lines = counter(root, "LINE");
    let branches = counter(root, "BRANCH");
    match lines {
        Some(lines) => Ok(CoverageReport::from_totals(lines, branches, files)),
        None => Ok(CoverageReport::from_files(files)),
    }
}

fn jacoco_walk(el: &Element, files: &mut Vec<FileCoverage>) {
    for child in &el.children {
        match child.name.as_str() {
            "group" => jacoco_walk(child, files),
            "package" => {
                let package = child.attr("name").unwrap_or("");
                for source in child.children_named("sourcefile") {
                    let name = source.attr("name").unwrap_or("");
                    let path = if package.is_empty() {
                        name.to_string()
                    } else {
                        format!("{package}/{name}")
                    };
                    let (lc, lm) = counter(source, "LINE").unwrap_or((0, 0));
                    let branches = counter(source, "BRANCH").filter(|(c, m)| c + m > 0);
                    files.push(FileCoverage {
                        path,
                        lines_covered: lc,
                        lines_missed: lm,
                        branches_covered: branches.map(|b| b.0),
                        branches_missed: branches.map(|b| b.1),
                    });
                }
            }
            _ => {}
        }
    }
}

/// `(covered, missed)` of the direct `<counter type=kind>` child.
fn counter(el: &Element, kind: &str) -> Option<(u64, u64)> {
    el.children_named("counter")
        .find(|c| c.attr("type") == Some(kind))
        .map(|c| (c.count("covered"), c.count("missed")))
}

#[cfg(test)]
mod tests {
    use super::fraction;

    #[test]
    fn condition_coverage() {
        assert_eq!(fraction("50% (1/2)"), Some((1, 2)));
        assert_eq!(fraction("100% (4/4)"), Some((4, 4)));
        assert_eq!(fraction("50%"), None);
    }
}
