#[cfg(feature = "ssr")]
#[derive(clap::Parser)]
#[command(
    name = "nodebase",
    about = "Nodebase: workflow background jobs",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[cfg(feature = "ssr")]
#[derive(clap::Subcommand)]
enum Command {
    /// Serve the app and run the background workers (the default).
    Serve {
        /// all: pages and workers; web: pages only; worker: workers only.
        #[arg(long, value_enum, default_value = "all", env = "NODEBASE_ROLE")]
        role: nodebase::server::Role,
    },
    /// Run background workers only (the same as `serve --role worker`).
    Worker,
    /// Measure the engine on a fresh database and print the figures.
    Bench(nodebase::bench::BenchArgs),
    /// A worker process of `bench --processes N` (started by it).
    #[command(hide = true)]
    BenchWorker(nodebase::bench::BenchWorkerArgs),
}

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use clap::Parser;

    let cli = Cli::parse();
    let default_filter = match cli.command {
        Some(Command::Bench(_) | Command::BenchWorker(_)) => "warn",
        _ => "info",
    };
    let format = match nodebase::logging::LogFormat::from_env() {
        Ok(format) => format,
        Err(err) => {
            eprintln!("nodebase: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let traces = match nodebase::traces::from_env() {
        Ok(traces) => traces,
        Err(err) => {
            eprintln!("nodebase: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    nodebase::logging::init(format, default_filter, traces.as_ref());
    let result = match cli.command {
        None => nodebase::server::serve(nodebase::server::Role::All).await,
        Some(Command::Serve { role }) => nodebase::server::serve(role).await,
        Some(Command::Worker) => nodebase::server::serve(nodebase::server::Role::Worker).await,
        Some(Command::Bench(args)) => nodebase::bench::run(args).await,
        Some(Command::BenchWorker(args)) => nodebase::bench::worker(args).await,
    };
    if let Some(traces) = traces {
        nodebase::traces::flush(traces).await;
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nodebase: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "ssr"))]
pub fn main() {
    // The browser build starts in `nodebase::hydrate`; this binary is only for the server.
}
