//! kubeadm's `certs check-expiration` text table: same columns, date layout,
//! residual-time form and column alignment as kubeadm's tabwriter. The report it
//! renders is [`crate::pki::expiration`]'s data; how it reads on a terminal is the
//! CLI's business.

use time::OffsetDateTime;

use crate::pki::expiration::ExpirationReport;

/// kubeadm's text table: the certificates, a blank line, then the CAs.
pub fn render(report: &ExpirationReport) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut text =
        String::from("CERTIFICATE\tEXPIRES\tRESIDUAL TIME\tCERTIFICATE AUTHORITY\tEXTERNALLY MANAGED\n");
    for cert in &report.certificates {
        match cert.expiration.filter(|_| !cert.missing) {
            None => text.push_str(&format!("!MISSING! {}\t\t\t\t\n", cert.name)),
            Some(expiration) => text.push_str(&format!(
                "{}\t{}\t{}\t{}\t{:<8}\n",
                cert.name,
                expires(expiration),
                short_human_duration(cert.residual_seconds(report.now)),
                cert.ca_name.as_deref().unwrap_or(""),
                yes_no(cert.externally_managed),
            )),
        }
    }
    text.push('\n');
    text.push_str("CERTIFICATE AUTHORITY\tEXPIRES\tRESIDUAL TIME\tEXTERNALLY MANAGED\n");
    for ca in &report.certificate_authorities {
        match ca.expiration.filter(|_| !ca.missing) {
            None => text.push_str(&format!("!MISSING! {}\t\t\t\n", ca.name)),
            Some(expiration) => text.push_str(&format!(
                "{}\t{}\t{}\t{:<8}\n",
                ca.name,
                expires(expiration),
                short_human_duration(ca.residual_seconds(report.now)),
                yes_no(ca.externally_managed),
            )),
        }
    }
    tabwrite(&text, 10, 3)
}

/// kubeadm's `ExpirationDate.Format("Jan 02, 2006 15:04 MST")`, in UTC.
pub fn expires(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS[usize::from(u8::from(t.month())) - 1];
    format!(
        "{month} {:02}, {} {:02}:{:02} UTC",
        t.day(),
        t.year(),
        t.hour(),
        t.minute()
    )
}

/// apimachinery's `duration.ShortHumanDuration`, as kubeadm prints residual time:
/// `<invalid>` below -1s, then `Ns`, `Nm`, `Nh`, `Nd` (under a year), `Ny`.
pub fn short_human_duration(seconds: i64) -> String {
    match seconds {
        s if s < -1 => "<invalid>".into(),
        s if s < 0 => "0s".into(),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 24 * 3600 => format!("{}h", s / 3600),
        s if s / 3600 < 24 * 365 => format!("{}d", s / 3600 / 24),
        s => format!("{}y", s / 3600 / 24 / 365),
    }
}

/// Go's `text/tabwriter` with padchar `' '` and no flags: tab-terminated cells are
/// aligned per column block (consecutive lines that have the column), each column
/// `max(minwidth, widest cell + padding)` wide; the last cell of a line is not padded.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<Vec<&str>> = body.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::with_capacity(text.len() * 2);
    let mut widths = Vec::new();
    format_block(&lines, &mut widths, 0, lines.len(), minwidth, padding, &mut out);
    out
}

fn format_block(
    lines: &[Vec<&str>],
    widths: &mut Vec<usize>,
    mut line0: usize,
    line1: usize,
    minwidth: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(&lines[line0..this], widths, out);
        line0 = this;
        let mut width = minwidth;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, widths, line0, this, minwidth, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(&lines[line0..line1], widths, out);
}

fn write_lines(lines: &[Vec<&str>], widths: &[usize], out: &mut String) {
    for line in lines {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(width) = widths.get(j).filter(|_| j + 1 < line.len()) {
                let pad = width.saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::expiration::ExpirationEntry;

    fn dt(year: i32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> OffsetDateTime {
        let date = time::Date::from_calendar_date(year, time::Month::try_from(month).unwrap(), day).unwrap();
        date.with_hms(hour, minute, second).unwrap().assume_utc()
    }

    #[test]
    fn residual_time_is_kubeadm_short_form() {
        let day = 24 * 3600;
        for (seconds, want) in [
            (-10, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (3599, "59m"),
            (3600, "1h"),
            (day - 1, "23h"),
            (day, "1d"),
            (365 * day - 301, "364d"),
            (365 * day, "1y"),
            (10 * 365 * day - 300, "9y"),
        ] {
            assert_eq!(short_human_duration(seconds), want, "{seconds}");
        }
    }

    #[test]
    fn dates_use_kubeadm_layout() {
        assert_eq!(expires(dt(2026, 8, 19, 9, 3, 7)), "Aug 19, 2026 09:03 UTC");
    }

    #[test]
    fn tabwriter_matches_go() {
        // Expected output printed by Go's text/tabwriter (10, 4, 3, ' ', 0) for the same input.
        let text = "a\tbb\tc\nlonger cell\tx\ty\n\nh1\th2\n";
        assert_eq!(
            tabwrite(text, 10, 3),
            "a             bb        c\nlonger cell   x         y\n\nh1        h2\n"
        );
    }

    #[test]
    fn table_has_kubeadm_shape() {
        let now = dt(2025, 8, 19, 9, 8, 0);
        let leaf = dt(2026, 8, 19, 9, 3, 0);
        let ca = dt(2035, 8, 17, 9, 3, 0);
        let report = ExpirationReport {
            now,
            certificates: vec![
                ExpirationEntry::present("admin.conf", leaf, Some("ca")),
                ExpirationEntry::present("apiserver-kubelet-client", leaf, Some("ca")),
                ExpirationEntry::present("front-proxy-client", leaf, Some("front-proxy-ca")),
                ExpirationEntry::missing("scheduler.conf", Some("ca")),
            ],
            certificate_authorities: vec![
                ExpirationEntry::present("ca", ca, None),
                ExpirationEntry {
                    externally_managed: true,
                    ..ExpirationEntry::present("front-proxy-ca", ca, None)
                },
            ],
        };
        // Produced by Go's text/tabwriter with kubeadm's settings and format strings
        // (tests/fixtures/check-expiration/kubeadm-table.go.txt).
        let want = include_str!("../../tests/fixtures/check-expiration/kubeadm-table.golden");
        assert_eq!(render(&report), want);
    }
}
