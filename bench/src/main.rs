//! rmicro against the peers a Rust team would pick instead — a raw tokio TCP echo (the floor),
//! tarpc, tonic and raw async-nats — on the same machine, in the same run, with the same
//! messages.
//!
//! ```text
//! cargo run --release -p rmicro-bench -- [--quick] [--rounds N] [--only SYSTEM/TRANSPORT]...
//! ```
//!
//! Each round, the orchestrator starts every system's server in its own process pinned to CPU 0,
//! then for each payload and number of calls in flight runs one load process per system, one
//! after the other, pinned to CPU 1 (when the machine has two), each on a one-threaded Tokio
//! runtime. It reads the server's CPU time at the opening and closing of the measured window and
//! its peak RSS over the scenario from `/proc`. Rows report the median of their rounds (the
//! systems go in reverse order every other round): on a shared VM whole minutes run faster or
//! slower, and rows measured minutes apart would carry that drift into their ratio. For the same
//! reason each target's ratio is the median of the ratios measured within each round. Each
//! scenario first runs its first system once unmeasured, so that no measured row directly
//! follows a heavier scenario, which this VM was seen to run the next one faster after. NATS is
//! the machine's nats-server (`MICRO_TEST_NATS_URL`, default `nats://127.0.0.1:4222`), not
//! pinned. Results go to stdout as Markdown and to
//! `bench/results/latest.json` and `latest.md`.

mod load;
mod messages;
mod peers;
mod procfs;
mod report;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use messages::Payload;
use peers::Scenario;
use report::Row;

const CONCURRENCIES: [usize; 3] = [1, 16, 256];

fn nats_url() -> String {
    std::env::var("MICRO_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| fail(&e.to_string()))
}

fn fail(why: &str) -> ! {
    eprintln!("rmicro-bench: {why}");
    std::process::exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("load") => load(&args[1..]),
        _ => orchestrate(&args),
    }
}

/// `serve SYSTEM TRANSPORT`: prints `LISTENING <address>`, serves until stdin closes.
fn serve(args: &[String]) {
    let [system, transport] = args else { fail("usage: serve SYSTEM TRANSPORT") };
    runtime().block_on(async {
        let (address, _running) =
            peers::serve(system, transport, &nats_url()).await.unwrap_or_else(|e| fail(&format!("{system}: {e}")));
        println!("LISTENING {address}");
        let _ = std::io::stdout().flush();
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await;
    });
}

/// `load SYSTEM TRANSPORT ADDRESS PAYLOAD CONCURRENCY WARM_UP_MS WINDOW_MS`: prints the window
/// lines, then `RESULT <json>`.
fn load(args: &[String]) {
    let [system, transport, address, payload, concurrency, warm_up, window] = args else {
        fail("usage: load SYSTEM TRANSPORT ADDRESS PAYLOAD CONCURRENCY WARM_UP_MS WINDOW_MS")
    };
    let number = |s: &str| s.parse::<u64>().unwrap_or_else(|_| fail(&format!("not a number: {s}")));
    let scenario = Scenario {
        payload: Payload::parse(payload).unwrap_or_else(|| fail(&format!("unknown payload {payload}"))),
        concurrency: number(concurrency) as usize,
        warm_up: Duration::from_millis(number(warm_up)),
        window: Duration::from_millis(number(window)),
    };
    let measured = runtime()
        .block_on(peers::load(system, transport, address, &nats_url(), scenario))
        .unwrap_or_else(|e| fail(&format!("{system}/{transport}: {e}")));
    println!("RESULT {}", serde_json::to_string(&measured).unwrap_or_default());
}

/// Runs `args` of this executable, on `core` when pinning.
fn spawn_self(args: &[&str], core: Option<usize>) -> Child {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(&e.to_string()));
    let mut command = match core {
        Some(core) => {
            let mut taskset = Command::new("taskset");
            taskset.arg("-c").arg(core.to_string()).arg(exe);
            taskset
        }
        None => Command::new(exe),
    };
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    command.spawn().unwrap_or_else(|e| fail(&format!("starting {args:?}: {e}")))
}

struct Options {
    quick: bool,
    rounds: Option<usize>,
    only: Vec<String>,
}

fn options(args: &[String]) -> Options {
    let usage = "usage: rmicro-bench [--quick] [--rounds N] [--only SYSTEM/TRANSPORT]";
    let mut options = Options { quick: false, rounds: None, only: Vec::new() };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--rounds" => match args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0) {
                Some(rounds) => options.rounds = Some(rounds),
                None => fail(&format!("--rounds takes a number above zero; {usage}")),
            },
            "--only" => options.only.extend(args.next().cloned()),
            other => fail(&format!("unknown argument {other}; {usage}")),
        }
    }
    options
}

/// A system's server process, started afresh for each round.
struct Server {
    system: &'static str,
    transport: &'static str,
    process: Child,
    address: String,
}

fn start_servers(only: &[String], core: Option<usize>) -> Vec<Server> {
    let mut servers = Vec::new();
    for &(system, transport) in peers::SYSTEMS {
        let name = format!("{system}/{transport}");
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let mut process = spawn_self(&["serve", system, transport], core);
        match read_line(&mut process).and_then(|l| l.strip_prefix("LISTENING ").map(str::to_owned)) {
            Some(address) => servers.push(Server { system, transport, process, address }),
            None => {
                eprintln!("rmicro-bench: {name}: the server did not start; not measured");
                let _ = process.kill();
                let _ = process.wait();
            }
        }
    }
    servers
}

fn stop_servers(servers: Vec<Server>) {
    for mut server in servers {
        drop(server.process.stdin.take());
        let _ = server.process.wait();
    }
}

fn orchestrate(args: &[String]) {
    let options = options(args);
    let (warm_up, window, rounds) = if options.quick { (200, 1000, 1) } else { (500, 2000, 3) };
    let rounds = options.rounds.unwrap_or(rounds);
    let pinned = procfs::cores() >= 2;
    let (server_core, client_core) = if pinned { (Some(0), Some(1)) } else { (None, None) };
    let machine = machine(pinned, warm_up, window, rounds);
    println!("{machine}\n\nEach row as measured, after its round:\n");
    let mut samples = Vec::new();
    for round in 1..=rounds {
        let mut servers = start_servers(&options.only, server_core);
        if round % 2 == 0 {
            servers.reverse();
        }
        for payload in Payload::ALL {
            for concurrency in CONCURRENCIES {
                let scenario = (payload.name(), concurrency, warm_up, window);
                samples.extend(measure_row(round, &servers, scenario, client_core));
            }
        }
        stop_servers(servers);
    }
    let rows = report::medians(&samples);
    let table: Vec<String> = rows.iter().map(Row::markdown).collect();
    println!("\nMedians of {rounds} round(s):\n\n{}\n{}", report::TABLE_HEAD, table.join("\n"));
    let targets = report::targets(&samples, Payload::Message.name());
    println!("\nTargets ({}):\n{}", Payload::Message.name(), targets.join("\n"));
    write_results(&machine, &rows, &targets);
}

/// One scenario (payload, calls in flight, warm-up and window in ms) on every server in turn,
/// after an unmeasured pass of the first.
fn measure_row(round: usize, servers: &[Server], scenario: (&str, usize, u64, u64), core: Option<usize>) -> Vec<Row> {
    let (payload, concurrency, warm_up, window) = scenario;
    let settle = servers.first().map(|first| (first, false));
    let mut rows = Vec::new();
    for (server, measured) in settle.into_iter().chain(servers.iter().map(|s| (s, true))) {
        let args = [
            server.system,
            server.transport,
            &server.address,
            payload,
            &concurrency.to_string(),
            &warm_up.to_string(),
            &window.to_string(),
        ];
        match measure(&args, round, server.process.id(), core) {
            Ok(row) if measured => {
                println!("round {round}: {}", row.markdown());
                rows.push(row);
            }
            Ok(_) => {}
            Err(e) => eprintln!("rmicro-bench: {}/{} {payload} x{concurrency}: {e}", server.system, server.transport),
        }
    }
    rows
}

fn read_line(child: &mut Child) -> Option<String> {
    let stdout = child.stdout.as_mut()?;
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    reader.read_line(&mut line).ok()?;
    Some(line.trim_end().to_owned())
}

/// Runs one load process (in round `round`) and reads the server's CPU around its window.
fn measure(scenario: &[&str; 7], round: usize, server: u32, core: Option<usize>) -> Result<Row, String> {
    let [system, transport, _, payload, concurrency, ..] = *scenario;
    let mut args = vec!["load"];
    args.extend(scenario);
    procfs::reset_peak_rss(server);
    let mut client = spawn_self(&args, core);
    let Some(stdout) = client.stdout.take() else {
        let _ = client.kill();
        let _ = client.wait();
        return Err("the load process has no stdout".to_owned());
    };
    let (mut opened, mut closed, mut measured) = (None, None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        match line.as_str() {
            "WINDOW OPEN" => opened = Some(procfs::cpu(server)),
            "WINDOW CLOSED" => closed = Some(procfs::cpu(server)),
            _ => {
                if let Some(json) = line.strip_prefix("RESULT ") {
                    measured = Some(serde_json::from_str::<load::Measured>(json).map_err(|e| e.to_string())?);
                }
            }
        }
    }
    let status = client.wait().map_err(|e| e.to_string())?;
    let (Some(opened), Some(closed), Some(m)) = (opened, closed, measured) else {
        return Err(format!("the load process ended ({status}) without a result"));
    };
    if let Some(error) = &m.first_error {
        eprintln!("rmicro-bench: {system}/{transport} {payload} x{concurrency}: first error: {error}");
    }
    let per_call = |micros: f64| if m.calls == 0 { 0.0 } else { micros / m.calls as f64 };
    Ok(Row {
        system: system.to_owned(),
        transport: transport.to_owned(),
        payload: payload.to_owned(),
        concurrency: concurrency.parse().unwrap_or(0),
        calls_per_sec: m.calls as f64 / m.seconds,
        p50_us: m.p50_us,
        p99_us: m.p99_us,
        p999_us: m.p999_us,
        server_cpu_us_per_call: per_call((closed - opened).as_secs_f64() * 1e6),
        client_cpu_us_per_call: per_call(m.client_cpu_us),
        server_rss_kib: procfs::peak_rss_kib(server),
        errors: m.errors,
        round,
    })
}

/// What the numbers were measured on.
fn machine(pinned: bool, warm_up: u64, window: u64, rounds: usize) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("unknown", |m| m.trim_start_matches([' ', '\t', ':']));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let pinning = if pinned {
        "server pinned to CPU 0, load generator to CPU 1 (taskset); nats-server not pinned"
    } else {
        "one CPU: server and load generator share it (not pinned)"
    };
    format!(
        "Machine: {model}, {} CPUs, Linux {}, {rustc}.\n{pinning}; each process one Tokio thread (current_thread runtime); one client connection.\nClosed loop, {warm_up} ms warm-up then {window} ms measured per row; {rounds} round(s), each with freshly started servers, the systems of a row measured one after the other (in reverse order every other round) after one unmeasured pass of the first; each figure is the median of the rounds, RSS the highest, errors the sum; each target ratio is the median of the ratios within each round; latency by HdrHistogram; CPU from /proc/<pid>/stat; RSS = peak (VmHWM) during the row.",
        procfs::cores(),
        kernel.trim()
    )
}

fn write_results(machine: &str, rows: &[Row], targets: &[String]) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let json = serde_json::to_string_pretty(rows).unwrap_or_default();
    let table: Vec<String> = rows.iter().map(Row::markdown).collect();
    let markdown = format!(
        "# rmicro-bench results\n\n{machine}\n\n{}\n{}\n\nTargets ({}):\n\n{}\n",
        report::TABLE_HEAD,
        table.join("\n"),
        Payload::Message.name(),
        targets.join("\n")
    );
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("latest.json"), json + "\n"))
        .and_then(|()| std::fs::write(dir.join("latest.md"), markdown));
    match written {
        Ok(()) => println!("\nwrote {}/latest.json and latest.md", dir.display()),
        Err(e) => fail(&format!("writing results to {}: {e}", dir.display())),
    }
}
