//! Process metrics read from `/proc/self`, under the names Prometheus' client
//! libraries use (`process_*`), since prometheus-client has no process collector.
//! On a system without `/proc` the families are left out.

use std::{fmt::Write as _, fs};

/// Clock ticks per second of `/proc/<pid>/stat` times: Linux reports them in
/// USER_HZ, which is 100 on every architecture Kubernetes runs on.
const USER_HZ: f64 = 100.0;

/// A snapshot of the process' resource use.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size, bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory size, bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// User plus system CPU time, seconds.
    pub cpu_seconds_total: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Soft limit of open file descriptors.
    pub max_fds: Option<u64>,
    /// Start time since the Unix epoch, seconds.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads `/proc/self`.
    pub fn read() -> Self {
        let stat = fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().and_then(stat_fields);
        let boot_time = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time_seconds(&s));
        let status = fs::read_to_string("/proc/self/status").ok();
        Self {
            resident_memory_bytes: status
                .as_deref()
                .and_then(|s| status_kib(s, "VmRSS:"))
                .map(|k| k * 1024),
            virtual_memory_bytes: status
                .as_deref()
                .and_then(|s| status_kib(s, "VmSize:"))
                .map(|k| k * 1024),
            cpu_seconds_total: fields.as_ref().and_then(|f| {
                // utime and stime are fields 14 and 15 of stat(5) (1-based).
                let utime: u64 = f.get(14 - 3)?.parse().ok()?;
                let stime: u64 = f.get(15 - 3)?.parse().ok()?;
                Some((utime + stime) as f64 / USER_HZ)
            }),
            open_fds: fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
            max_fds: fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|s| max_open_files(&s)),
            start_time_seconds: fields.as_ref().zip(boot_time).and_then(|(f, boot)| {
                // starttime, field 22: clock ticks after boot.
                let ticks: u64 = f.get(22 - 3)?.parse().ok()?;
                Some(boot as f64 + ticks as f64 / USER_HZ)
            }),
        }
    }

    /// The stats as Prometheus text. `open_metrics` selects the OpenMetrics
    /// spelling of the counter (family `process_cpu_seconds`, sample `_total`).
    pub fn encode(&self, out: &mut String, open_metrics: bool) {
        let gauge = |out: &mut String, name: &str, help: &str, value: Option<f64>| {
            if let Some(value) = value {
                let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
            }
        };
        gauge(
            out,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            self.resident_memory_bytes.map(|v| v as f64),
        );
        gauge(
            out,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            self.virtual_memory_bytes.map(|v| v as f64),
        );
        if let Some(cpu) = self.cpu_seconds_total {
            let family = if open_metrics {
                "process_cpu_seconds"
            } else {
                "process_cpu_seconds_total"
            };
            let _ = write!(
                out,
                "# HELP {family} Total user and system CPU time spent in seconds.\n# TYPE {family} counter\n\
                 process_cpu_seconds_total {cpu}\n"
            );
        }
        gauge(
            out,
            "process_open_fds",
            "Number of open file descriptors.",
            self.open_fds.map(|v| v as f64),
        );
        gauge(
            out,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            self.max_fds.map(|v| v as f64),
        );
        gauge(
            out,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds,
        );
    }
}

/// The fields of `/proc/<pid>/stat` after the command name, which is in
/// parentheses and may itself hold spaces and parentheses: the first field
/// returned is field 3 (state).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().collect())
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch.
fn boot_time_seconds(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS:   1234 kB`).
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (tokio (rt) 1) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 12345 1000 200";
        let fields = stat_fields(stat).expect("parsable");
        assert_eq!(fields[0], "S");
        assert_eq!(fields[14 - 3], "250");
        assert_eq!(fields[15 - 3], "50");
        assert_eq!(fields[22 - 3], "12345");
    }

    #[test]
    fn status_and_limits_lines_are_read() {
        assert_eq!(
            status_kib("Name:\tkamaji\nVmSize:\t  2048 kB\nVmRSS:\t   512 kB\n", "VmRSS:"),
            Some(512)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1048576              1048576              files\n";
        assert_eq!(max_open_files(limits), Some(1_048_576));
        assert_eq!(
            boot_time_seconds("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_reports_every_family() {
        let stats = ProcessStats::read();
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        assert!(stats.resident_memory_bytes.unwrap_or(0) > 0);
        assert!(stats.open_fds.unwrap_or(0) > 0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let started = stats.start_time_seconds.unwrap_or(0.0);
        assert!(
            started > 0.0 && started <= now + 1.0,
            "start {started}, now {now}"
        );
        let mut text = String::new();
        stats.encode(&mut text, false);
        for family in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("\n{family} ")),
                "{family} missing in\n{text}"
            );
        }
        let mut open = String::new();
        stats.encode(&mut open, true);
        assert!(open.contains("# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total "));
    }
}
