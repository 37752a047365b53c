//! The `docker` executor: one container per build, from the build's image,
//! through the Docker Engine API (bollard). The source and control
//! directories are bind-mounted at their host paths; each phase is a `docker
//! exec` of the phase script with the image's shell. Removing the container
//! ends every process of the build.

use std::io::Write;
use std::sync::Mutex;

use async_trait::async_trait;
use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateImageOptions, RemoveContainerOptions};
use futures_util::StreamExt;

use super::{Environment, EnvironmentConfig, ExecError, Executor, ShellInvocation};
use crate::script::LOG_FIFO;

/// Runs builds in Docker containers.
#[derive(Debug, Default)]
pub struct DockerExecutor;

fn docker_error(context: &str, error: bollard::errors::Error) -> ExecError {
    ExecError::Docker(format!("{context}: {error}"))
}

#[async_trait]
impl Executor for DockerExecutor {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn start(&self, config: &EnvironmentConfig) -> Result<Box<dyn Environment>, ExecError> {
        let image = config.image.clone().ok_or_else(|| ExecError::Unavailable {
            executor: "docker",
            reason: "no image given: pass --image NAME".into(),
        })?;
        let docker = Docker::connect_with_local_defaults().map_err(|e| ExecError::Unavailable {
            executor: "docker",
            reason: format!("cannot reach the Docker Engine: {e}"),
        })?;
        docker.ping().await.map_err(|e| ExecError::Unavailable {
            executor: "docker",
            reason: format!("the Docker Engine does not answer: {e}"),
        })?;
        let inspect = match docker.inspect_image(&image).await {
            Ok(inspect) => inspect,
            Err(_) if !config.pull => {
                return Err(ExecError::Unavailable {
                    executor: "docker",
                    reason: format!("image {image} is not present locally (and pulling is off)"),
                });
            }
            Err(_) => {
                pull(&docker, &image).await?;
                docker
                    .inspect_image(&image)
                    .await
                    .map_err(|e| docker_error(&format!("image {image}"), e))?
            }
        };
        let base_env = inspect
            .config
            .and_then(|c| c.env)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let src = config.source_dir.to_string_lossy().into_owned();
        let control = config.control_dir.to_string_lossy().into_owned();
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint: Some(vec!["sh".into(), "-c".into()]),
            // The container idles; phases are `docker exec`s into it.
            cmd: Some(vec![
                "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done".into(),
            ]),
            working_dir: Some(src.clone()),
            env: Some(vec![format!("{}={}", super::RUN_ID_VAR, config.run_id)]),
            labels: Some([("gantry.build-run".to_string(), config.run_id.clone())].into()),
            host_config: Some(HostConfig {
                binds: Some(vec![
                    format!("{src}:{src}:rw"),
                    format!("{control}:{control}:rw"),
                ]),
                network_mode: (!config.network).then(|| "none".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = docker
            .create_container(None, body)
            .await
            .map_err(|e| docker_error("creating the container", e))?;
        let environment = DockerEnvironment {
            docker,
            container: created.id,
            config: config.clone(),
            base_env,
            removed: Mutex::new(false),
        };
        if let Err(e) = environment
            .docker
            .start_container(&environment.container, None)
            .await
        {
            environment.kill_all().await;
            return Err(docker_error("starting the container", e));
        }
        Ok(Box::new(environment))
    }
}

async fn pull(docker: &Docker, image: &str) -> Result<(), ExecError> {
    let options = CreateImageOptions {
        from_image: Some(image.to_string()),
        ..Default::default()
    };
    let mut progress = docker.create_image(Some(options), None, None);
    while let Some(step) = progress.next().await {
        step.map_err(|e| ExecError::Unavailable {
            executor: "docker",
            reason: format!("image {image} is not present and could not be pulled: {e}"),
        })?;
    }
    Ok(())
}

struct DockerEnvironment {
    docker: Docker,
    container: String,
    config: EnvironmentConfig,
    base_env: Vec<(String, String)>,
    removed: Mutex<bool>,
}

impl DockerEnvironment {
    /// Runs `cmd` in the container and returns its exit code and stdout.
    async fn exec(
        &self,
        cmd: Vec<String>,
        user: Option<String>,
        forward: bool,
    ) -> Result<(i64, Vec<u8>), ExecError> {
        let options = CreateExecOptions {
            cmd: Some(cmd),
            user,
            working_dir: Some(self.config.source_dir.to_string_lossy().into_owned()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(&self.container, options)
            .await
            .map_err(|e| docker_error("creating an exec", e))?;
        let mut captured = Vec::new();
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| docker_error("starting an exec", e))?
        {
            // The phase script sends its output to the log FIFO itself; what
            // arrives here is the shell's own complaints before that.
            let mut log = forward
                .then(|| {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(self.config.control_dir.join(LOG_FIFO))
                        .ok()
                })
                .flatten();
            while let Some(chunk) = output.next().await {
                let Ok(chunk) = chunk else { break };
                let bytes = chunk.into_bytes();
                match log.as_mut() {
                    Some(log) => {
                        let _ = log.write_all(&bytes);
                    }
                    None => captured.extend_from_slice(&bytes),
                }
            }
        }
        let inspect = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| docker_error("inspecting an exec", e))?;
        Ok((inspect.exit_code.unwrap_or(-1), captured))
    }
}

#[async_trait]
impl Environment for DockerEnvironment {
    fn base_env(&self) -> Vec<(String, String)> {
        self.base_env.clone()
    }

    async fn resolve_owner(&self, user: Option<&str>) -> Result<Option<(u32, u32)>, ExecError> {
        let Some(user) = user else { return Ok(None) };
        let (code, out) = self
            .exec(vec!["id".into(), "-u".into(), user.into()], None, false)
            .await?;
        let (gcode, gout) = self
            .exec(vec!["id".into(), "-g".into(), user.into()], None, false)
            .await?;
        let parse = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().parse::<u32>().ok();
        match (code, gcode, parse(&out), parse(&gout)) {
            (0, 0, Some(uid), Some(gid)) => Ok(Some((uid, gid))),
            _ => Err(ExecError::User {
                user: user.to_string(),
                reason: "no such user in the image".into(),
            }),
        }
    }

    async fn run(&self, invocation: &ShellInvocation) -> Result<i32, ExecError> {
        let cmd = vec![
            invocation.shell.program().to_string(),
            invocation.script.to_string_lossy().into_owned(),
        ];
        let (code, _) = self.exec(cmd, invocation.user.clone(), true).await?;
        Ok(code as i32)
    }

    async fn kill_all(&self) {
        {
            let mut removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
            if *removed {
                return;
            }
            *removed = true;
        }
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        let _ = self
            .docker
            .remove_container(&self.container, Some(options))
            .await;
    }

    async fn close(&self) {
        self.kill_all().await;
    }
}
