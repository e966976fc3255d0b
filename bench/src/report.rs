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
    /// The round the row was measured in (0 for a row of medians).
    #[serde(skip)]
    pub(crate) round: usize,
}

pub(crate) const TABLE_HEAD: &str = "| system | transport | payload | in flight | calls/s | p50 µs | p99 µs | p99.9 µs | server CPU µs/call | client CPU µs/call | server RSS KiB | errors |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

impl Row {
    /// What was measured: system, transport, payload and calls in flight.
    fn scenario(&self) -> (&str, &str, &str, usize) {
        (&self.system, &self.transport, &self.payload, self.concurrency)
    }

    pub(crate) fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
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

/// The same scenario of two systems in each round both were measured in: rows seconds apart.
fn pairs<'a>(
    samples: &'a [Row],
    ours: (&str, &str),
    peer: (&str, &str),
    payload: &str,
    c: usize,
) -> Vec<(&'a Row, &'a Row)> {
    samples
        .iter()
        .filter(|r| r.scenario() == (ours.0, ours.1, payload, c))
        .filter_map(|r| {
            let theirs = samples.iter().find(|p| p.round == r.round && p.scenario() == (peer.0, peer.1, payload, c))?;
            Some((r, theirs))
        })
        .collect()
}

/// The targets, each as a ratio of two systems: the median of the ratios measured within
/// each round, so that the VM's pace, which drifts between rounds minutes apart, falls on both
/// sides of each one. The rounds' own ratios follow in brackets.
pub(crate) fn targets(samples: &[Row], payload: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut check = |what: String, pairs: &[(&Row, &Row)], figure: fn(&Row) -> f64, holds: fn(f64) -> bool| {
        if pairs.is_empty() {
            return;
        }
        let ratios: Vec<f64> = pairs.iter().map(|(ours, peer)| figure(ours) / figure(peer)).collect();
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        let ratio = median(ratios);
        let verdict = if holds(ratio) { "met" } else { "NOT met" };
        lines.push(format!("- {what}: {ratio:.2} [rounds: {}] ({verdict})", each.join(", ")));
    };
    let calls: fn(&Row) -> f64 = |r| r.calls_per_sec;
    let rss: fn(&Row) -> f64 = |r| r.server_rss_kib as f64;
    for c in crate::CONCURRENCIES {
        let tarpc = pairs(samples, ("rmicro", "tcp"), ("tarpc", "tcp"), payload, c);
        check(format!("rmicro/tcp ÷ tarpc calls/s at {c} in flight"), &tarpc, calls, |r| r > 1.0);
        let cpu = |r: &Row| r.server_cpu_us_per_call;
        check(format!("rmicro/tcp ÷ tarpc server CPU per call at {c} in flight"), &tarpc, cpu, |r| r <= 1.0);
        let tonic = pairs(samples, ("rmicro", "grpc"), ("tonic", "grpc"), payload, c);
        check(format!("rmicro/grpc ÷ tonic calls/s at {c} in flight"), &tonic, calls, |r| r >= 0.9);
        check(format!("rmicro/grpc ÷ tonic p99 at {c} in flight"), &tonic, |r| r.p99_us, |r| r <= 1.2);
        check(format!("rmicro/grpc ÷ tonic server RSS at {c} in flight"), &tonic, rss, |r| r <= 1.5);
        let nats = pairs(samples, ("rmicro", "nats"), ("async-nats", "nats"), payload, c);
        check(format!("rmicro/nats ÷ async-nats calls/s at {c} in flight"), &nats, calls, |r| r >= 0.9);
        let tcp_tonic = pairs(samples, ("rmicro", "tcp"), ("tonic", "grpc"), payload, c);
        check(format!("rmicro/tcp ÷ tonic server RSS at {c} in flight"), &tcp_tonic, rss, |r| r <= 1.5);
    }
    let raw = pairs(samples, ("rmicro", "tcp"), ("raw-tcp", "tcp"), payload, 1);
    check("rmicro/tcp ÷ raw TCP p50 at 1 in flight".to_owned(), &raw, |r| r.p50_us, |r| r <= 1.1);
    lines
}

/// One row per system, payload and number in flight, in table order: each figure the median of
/// that row's rounds, RSS the highest and errors the sum.
pub(crate) fn medians(samples: &[Row]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for sample in samples {
        if rows.iter().any(|r| r.scenario() == sample.scenario()) {
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
            round: 0,
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
            round: 0,
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

    #[test]
    fn a_target_is_the_median_of_the_ratios_within_each_round() {
        let measured = |system: &str, transport: &str, round: usize, calls_per_sec: f64| Row {
            transport: transport.to_owned(),
            payload: "581B-msg".to_owned(),
            round,
            ..row(system, 16, calls_per_sec, 1)
        };
        // The VM runs round 2 at half the pace: within each round rmicro leads, though its
        // median (11.5) is below tarpc's (12). Round 3 lacks tarpc, so it has no ratio.
        let samples = [
            measured("rmicro", "tcp", 1, 24.0),
            measured("tarpc", "tcp", 1, 20.0),
            measured("tarpc", "tcp", 2, 8.0),
            measured("rmicro", "tcp", 2, 10.0),
            measured("rmicro", "tcp", 3, 9.0),
            measured("tarpc", "tcp", 4, 12.0),
            measured("rmicro", "tcp", 4, 13.0),
        ];
        let lines = targets(&samples, "581B-msg");
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0], "- rmicro/tcp ÷ tarpc calls/s at 16 in flight: 1.20 [rounds: 1.20, 1.25, 1.08] (met)");
    }
}
