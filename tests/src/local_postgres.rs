//! A PostgreSQL server of a test's own, for the agent's shared store.

/// A PostgreSQL server of the test's own: a fresh cluster in a temporary folder,
/// reached on a Unix socket there only (no TCP port), stopped when dropped. As root
/// it runs as the `postgres` user, since PostgreSQL refuses to run as root.
pub struct LocalPostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    run_as: Option<&'static str>,
}

impl LocalPostgres {
    fn bin_dir() -> std::path::PathBuf {
        let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .collect();
        found.sort();
        found.pop().expect(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: `apt-get install postgresql` (.ci/run does)",
        )
    }

    fn command(&self, program: &str) -> std::process::Command {
        let path = self.bin.join(program);
        match self.run_as {
            Some(user) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => std::process::Command::new(path),
        }
    }

    pub fn start() -> LocalPostgres {
        let dir = tempfile::tempdir().unwrap();
        let run_as = nix::unistd::geteuid().is_root().then_some("postgres");
        if let Some(user) = run_as {
            let user = nix::unistd::User::from_name(user)
                .unwrap()
                .expect("a `postgres` user (the postgresql package makes it)");
            std::os::unix::fs::chown(dir.path(), Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .unwrap();
        }
        let pg = LocalPostgres {
            bin: Self::bin_dir(),
            dir,
            run_as,
        };
        let data = pg.dir.path().join("data");
        let ok = pg
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "slipway",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "initdb failed");
        let options = format!(
            "-k {} -c listen_addresses='' -c fsync=off",
            pg.dir.path().display()
        );
        let ok = pg
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(pg.dir.path().join("server.log"))
            .args(["-o", &options, "-w", "start"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "pg_ctl start failed");
        pg
    }

    /// libpq settings that reach it.
    pub fn settings(&self) -> String {
        format!(
            "host={} user=slipway dbname=postgres",
            self.dir.path().display()
        )
    }
    /// Runs `sql` with `psql` as the cluster's superuser: what someone with the
    /// database's password could do behind the agent's back.
    pub fn psql(&self, sql: &str) -> String {
        let out = self
            .command("psql")
            .args(["-h"])
            .arg(self.dir.path())
            .args([
                "-U",
                "slipway",
                "-d",
                "postgres",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .status();
    }
}
