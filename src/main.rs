//! The `switchboard` binary: reads the configuration, sets up logging and runs the app.

use std::path::PathBuf;

use anyhow::Context;
use base64::prelude::{Engine as _, BASE64_STANDARD};
use clap::{Parser, Subcommand};
use switchboard::config::{Config, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Answers WhatsApp Cloud API calls and relays them to agents in a browser call centre.",
    long_about = "Answers WhatsApp Cloud API calls with its own WebRTC media engine and relays \
                  the Opus packets to agents' browsers.\n\nEvery setting can come from a flag, \
                  an environment variable or the config file (flags win over the environment, \
                  the environment over the file). With no WhatsApp credentials set, switchboard \
                  starts in its sandbox: Meta is simulated on this machine."
)]
struct Cli {
    /// TOML config file (see deploy/switchboard.example.toml).
    #[arg(long, env = "SWITCHBOARD_CONFIG", global = true)]
    config: Option<PathBuf>,

    /// Log format: `human` (lines for a terminal) or `json` (one object per line, for a log
    /// collector). The level comes from RUST_LOG (default `info`; SDP is logged at `debug`).
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,

    #[command(flatten)]
    settings: Settings,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run switchboard (the default).
    Run,
    /// Ask a switchboard running in its sandbox to receive a simulated WhatsApp call. The caller
    /// plays a built-in melody unless given --audio (or, in a build with the `tones` feature,
    /// --tone).
    SimulateCall {
        /// An Ogg/Opus file (mono or stereo, 20 ms frames, e.g. `opusenc --framesize 20`) for
        /// the caller to play in a loop instead of the built-in melody.
        #[arg(long, value_name = "FILE", conflicts_with = "tone")]
        audio: Option<PathBuf>,
        /// A sine tone in Hz for the caller to play instead: only a switchboard built with the
        /// `tones` feature (libopus) makes tones; the release build refuses it.
        #[arg(long, value_name = "HZ")]
        tone: Option<f64>,
        /// Seconds until the caller hangs up (0: never).
        #[arg(long, default_value_t = 60)]
        hang_up_after: u64,
        /// The caller's number.
        #[arg(long)]
        from: Option<String>,
    },
    /// Read a password from standard input (one line) and print its argon2id PHC string, for
    /// the `password_hash` of a `[[people]]` entry.
    HashPassword,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::HashPassword) = cli.command {
        return hash_password();
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match cli.log_format {
        // Colour codes only for a terminal: in a file or a log collector they are noise.
        LogFormat::Human => tracing_subscriber::fmt()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_env_filter(filter)
            .init(),
        // Span fields (the call id) ride along on every line of the call.
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .init(),
    }
    let config = Config::load(cli.config.as_deref(), cli.settings).context("configuration")?;
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => rt.block_on(switchboard::app::run(config))?,
        Command::SimulateCall {
            audio,
            tone,
            hang_up_after,
            from,
        } => {
            let audio = match audio {
                Some(path) => Some(
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                ),
                None => None,
            };
            rt.block_on(simulate_call(&config, audio, tone, hang_up_after, from))?
        }
        Command::HashPassword => unreachable!("handled before the configuration is read"),
    }
    Ok(())
}

/// `switchboard hash-password`: one line of standard input in, a PHC string out.
fn hash_password() -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password (shown as you type): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading standard input")?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    let phc = switchboard::signaling::auth::hash_password(password)
        .context("cannot hash that password")?;
    println!("{phc}");
    Ok(())
}

async fn simulate_call(
    config: &Config,
    audio: Option<Vec<u8>>,
    tone: Option<f64>,
    hang_up_after: u64,
    from: Option<String>,
) -> anyhow::Result<()> {
    let url = format!(
        "http://{}/sandbox/calls",
        switchboard::app::loopback_of(config.http_addr)
    );
    let body = serde_json::json!({
        "audio_ogg_base64": audio.map(|a| BASE64_STANDARD.encode(a)),
        "tone_hz": tone,
        "hang_up_after_secs": hang_up_after,
        "from": from,
    });
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("is switchboard running in its sandbox at {url}?"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        println!("simulated call placed: {text}");
        Ok(())
    } else if status == reqwest::StatusCode::NOT_FOUND {
        anyhow::bail!("switchboard at {url} is not in its sandbox (WhatsApp credentials are set)")
    } else {
        anyhow::bail!("switchboard refused the simulated call ({status}): {text}")
    }
}
