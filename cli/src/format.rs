//! Numbers and tables for a person to read.

use std::io::Write;

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    // The leading group has 1 to 3 digits, every later one 3.
    let head = match digits.len() % 3 {
        0 => 3,
        r => r,
    };
    let mut out = digits[..head].to_owned();
    let mut rest = &digits[head..];
    while !rest.is_empty() {
        out.push(',');
        out.push_str(&rest[..3]);
        rest = &rest[3..];
    }
    out
}

/// How a column is aligned.
#[derive(Clone, Copy)]
pub enum Align {
    Left,
    Right,
}

/// Rows under a header, each column as wide as its widest cell, two spaces apart; no trailing spaces.
pub fn table(header: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header_row: Vec<String> = header.iter().map(|(h, _)| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header_row).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(header)
            .map(|((cell, &w), (_, align))| match align {
                Align::Left => format!("{cell:<w$}"),
                Align::Right => format!("{cell:>w$}"),
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Writes `text` to stdout; a reader that went away (`topk top | head -1`) is not an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// A JSON body as it came, ending in a newline.
pub fn print_json(body: &str) -> anyhow::Result<()> {
    if body.ends_with('\n') {
        print(body)
    } else {
        print(&format!("{body}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn tables_align_their_columns() {
        let t = table(
            &[
                ("rank", Align::Right),
                ("views", Align::Right),
                ("video", Align::Left),
            ],
            &[
                vec!["1".into(), "12,345".into(), "abc".into()],
                vec!["2".into(), "7".into(), "a-much-longer-id".into()],
            ],
        );
        assert_eq!(
            t,
            "rank   views  video\n   1  12,345  abc\n   2       7  a-much-longer-id\n"
        );
    }
}
