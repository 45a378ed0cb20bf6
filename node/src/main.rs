//! `comityd`: a Comity node in the foreground. SIGTERM or SIGINT stops it
//! gracefully (stop accepting, answer what is held, flush, exit 0).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use comity_config::{Config, LogFormat};
use comity_node::shutdown::Shutdown;
use comity_node::Node;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

mod daemon_args;
use daemon_args::Args;

fn main() -> ExitCode {
    comity_node::malloc::limit_arenas();
    comity_node::files::restrict_umask();
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("comityd: {}: {e}", args.config.display());
            return ExitCode::from(1);
        }
    };
    let json = match args.log_format.as_deref() {
        None => config.log.format == LogFormat::Json,
        Some("json") => true,
        Some("text") => false,
        Some(other) => {
            eprintln!("comityd: --log-format must be text or json, not {other:?}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log.level, json);
    if args.check {
        return match comity_config::load_key_file(&config.node.identity_key) {
            Ok(identity) => {
                println!(
                    "configuration and keys are valid; node id {}",
                    identity.id()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("comityd: {e}");
                ExitCode::from(1)
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("comityd: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config, args.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("comityd: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COMITY_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(config: Config, config_path: PathBuf) -> anyhow::Result<()> {
    for o in config.env_overrides() {
        info!(
            variable = o.var,
            key = o.key,
            "configuration overridden by the environment"
        );
    }
    let socket = config.node.admin_socket.clone();
    let metrics_listen = config.node.metrics_listen;
    let listener = comity_node::admin::bind(&socket)?;
    let node = Arc::new(Node::start(config).await?);
    let admin_stop = Shutdown::new();
    if let Some(addr) = metrics_listen {
        let node = node.clone();
        let stop = admin_stop.signal();
        tokio::spawn(async move {
            if let Err(e) = comity_node::metrics::serve(node, addr, stop).await {
                error!("metrics listener on {addr}: {e}");
            }
        });
    }
    let mut admin = tokio::spawn(comity_node::admin::serve(
        node.clone(),
        listener,
        socket,
        Some(config_path),
        admin_stop.signal(),
    ));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let admin_ended = tokio::select! {
        _ = term.recv() => { info!("SIGTERM received"); None }
        _ = int.recv() => { info!("SIGINT received"); None }
        r = &mut admin => Some(r),
    };
    admin_stop.trigger();
    let admin_error = match admin_ended {
        None => admin.await.ok().and_then(Result::err),
        Some(r) => Some(r.map_err(|e| anyhow::anyhow!("admin API task: {e}"))?.err()).flatten(),
    };
    node.shutdown().await?;
    match admin_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
