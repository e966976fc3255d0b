//! The rows of a run: the Markdown table, the JSON file, and the targets checked as ratios.

use serde::Serialize;

use crate::messages::Payload;

/// One measured scenario, as written to `results/latest.json`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    pub(crate) system: String,
    pub(crate) transport: String,
    pub(crate) payload: String,
    pub(crate) concurrency: usize,
    pub(crate) calls_per_sec: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    pub(crate) server_cpu_us_per_call: f64,
    pub(crate) client_cpu_us_per_call: f64,
    pub(crate) server_rss_kib: u64,
    pub(crate) errors: u64,
}

pub(crate) const TABLE_HEAD: &str = "| system | transport | payload | in flight | calls/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/call | client CPU µs/call | server RSS KiB | errors |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

impl Row {
    /// What was measured: system, transport, payload and calls in flight.
    fn scenario(&self) -> (&str, &str, &str, usize) {
        (&self.system, &self.transport, &self.payload, self.concurrency)
    }

    pub(crate) fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {} |",
            self.system,
            self.transport,
            self.payload,
            self.concurrency,
            self.calls_per_sec,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.server_cpu_us_per_call,
            self.client_cpu_us_per_call,
            self.server_rss_kib,
            self.errors
        )
    }
}

fn find<'a>(rows: &'a [Row], system: &str, transport: &str, payload: &str, concurrency: usize) -> Option<&'a Row> {
    rows.iter().find(|r| r.scenario() == (system, transport, payload, concurrency))
}

/// The targets, each as the ratio measured in this run and whether it holds.
pub(crate) fn targets(rows: &[Row], payload: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut check = |what: String, ratio: f64, holds: bool| {
        lines.push(format!("- {what}: {ratio:.2} {}", if holds { "(met)" } else { "(NOT met)" }));
    };
    for c in crate::CONCURRENCIES {
        let pair = |a: (&str, &str), b: (&str, &str)| {
            Some((find(rows, a.0, a.1, payload, c)?, find(rows, b.0, b.1, payload, c)?))
        };
        if let Some((ours, tarpc)) = pair(("rmicro", "tcp"), ("tarpc", "tcp")) {
            let ratio = ours.calls_per_sec / tarpc.calls_per_sec;
            check(format!("rmicro/tcp ÷ tarpc calls/s at {c} in flight"), ratio, ratio > 1.0);
            let cpu = ours.server_cpu_us_per_call / tarpc.server_cpu_us_per_call;
            check(format!("rmicro/tcp ÷ tarpc server CPU per call at {c} in flight"), cpu, cpu <= 1.0);
        }
        if let Some((ours, tonic)) = pair(("rmicro", "grpc"), ("tonic", "grpc")) {
            let ratio = ours.calls_per_sec / tonic.calls_per_sec;
            check(format!("rmicro/grpc ÷ tonic calls/s at {c} in flight"), ratio, ratio >= 0.9);
            let p99 = ours.p99_us / tonic.p99_us;
            check(format!("rmicro/grpc ÷ tonic p99 at {c} in flight"), p99, p99 <= 1.2);
            let rss = ours.server_rss_kib as f64 / tonic.server_rss_kib as f64;
            check(format!("rmicro/grpc ÷ tonic server RSS at {c} in flight"), rss, rss <= 1.5);
        }
        if let Some((ours, nats)) = pair(("rmicro", "nats"), ("async-nats", "nats")) {
            let ratio = ours.calls_per_sec / nats.calls_per_sec;
            check(format!("rmicro/nats ÷ async-nats calls/s at {c} in flight"), ratio, ratio >= 0.9);
        }
        if let Some((ours, tonic)) = pair(("rmicro", "tcp"), ("tonic", "grpc")) {
            let rss = ours.server_rss_kib as f64 / tonic.server_rss_kib as f64;
            check(format!("rmicro/tcp ÷ tonic server RSS at {c} in flight"), rss, rss <= 1.5);
        }
    }
    if let Some((ours, raw)) = find(rows, "rmicro", "tcp", payload, 1).zip(find(rows, "raw-tcp", "tcp", payload, 1)) {
        let ratio = ours.p50_us / raw.p50_us;
        check("rmicro/tcp ÷ raw TCP p50 at 1 in flight".to_owned(), ratio, ratio <= 1.1);
    }
    lines
}

/// One row per system, payload and number in flight, in table order: each figure the median of
/// that row's rounds, RSS the highest and errors the sum.
pub(crate) fn medians(samples: &[Row]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for sample in samples {
        if find(&rows, &sample.system, &sample.transport, &sample.payload, sample.concurrency).is_some() {
            continue;
        }
        let rounds: Vec<&Row> = samples.iter().filter(|r| r.scenario() == sample.scenario()).collect();
        let median = |figure: fn(&Row) -> f64| median(rounds.iter().map(|r| figure(r)).collect());
        rows.push(Row {
            calls_per_sec: median(|r| r.calls_per_sec),
            p50_us: median(|r| r.p50_us),
            p99_us: median(|r| r.p99_us),
            p999_us: median(|r| r.p999_us),
            server_cpu_us_per_call: median(|r| r.server_cpu_us_per_call),
            client_cpu_us_per_call: median(|r| r.client_cpu_us_per_call),
            server_rss_kib: rounds.iter().map(|r| r.server_rss_kib).max().unwrap_or(0),
            errors: rounds.iter().map(|r| r.errors).sum(),
            ..sample.clone()
        });
    }
    rows.sort_by_key(|r| {
        let system = crate::peers::SYSTEMS.iter().position(|&(s, t)| s == r.system && t == r.transport);
        let payload = Payload::ALL.iter().position(|p| p.name() == r.payload);
        (system, payload, r.concurrency)
    });
    rows
}

/// The middle value; the mean of the two middle ones for an even count.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(system: &str, concurrency: usize, calls_per_sec: f64, rss: u64) -> Row {
        Row {
            system: system.to_owned(),
            transport: "tcp".to_owned(),
            payload: "empty".to_owned(),
            concurrency,
            calls_per_sec,
            p50_us: calls_per_sec / 10.0,
            p99_us: 0.0,
            p999_us: 0.0,
            server_cpu_us_per_call: 0.0,
            client_cpu_us_per_call: 0.0,
            server_rss_kib: rss,
            errors: 1,
        }
    }

    #[test]
    fn rounds_combine_into_medians_in_table_order() {
        let samples = [
            row("rmicro", 1, 30.0, 7),
            row("raw-tcp", 1, 5.0, 1),
            row("rmicro", 1, 10.0, 9),
            row("raw-tcp", 1, 7.0, 1),
            row("rmicro", 1, 20.0, 8),
        ];
        let rows = medians(&samples);
        let figures: Vec<_> =
            rows.iter().map(|r| (r.system.as_str(), r.calls_per_sec, r.p50_us, r.server_rss_kib, r.errors)).collect();
        assert_eq!(figures, [("raw-tcp", 6.0, 0.6, 1, 2), ("rmicro", 20.0, 2.0, 9, 3)]);
    }
}
