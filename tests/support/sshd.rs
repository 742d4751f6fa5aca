//! A real OpenSSH server playing a payer's SFTP server: Debian's `sshd`
//! (its path in `CLEARWAY_TEST_SSHD`, which `scripts/test` installs and
//! sets) on 127.0.0.1, with its own host key, client key and
//! configuration in a temporary directory; stopped when dropped. The
//! payer's `inbound/` (batches arrive) and `outbound/` (answers wait)
//! directories are plain directories the test reads and writes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    /// The host key as an OpenSSH public key line (what Clearway pins).
    pub host_key: String,
    pub client_key: PathBuf,
    pub user: String,
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "clearway-test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (openssh-client)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Sshd {
    /// Starts the server (and waits until it accepts connections).
    pub fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        keygen(&root.join("host_ed25519"));
        keygen(&root.join("client_ed25519"));
        std::fs::copy(root.join("client_ed25519.pub"), root.join("authorized_keys")).unwrap();
        std::fs::create_dir_all(root.join("inbound")).unwrap();
        std::fs::create_dir_all(root.join("outbound")).unwrap();
        let host_pub = std::fs::read_to_string(root.join("host_ed25519.pub")).unwrap();
        let host_key = host_pub.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let user = Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap();
        // Privilege separation needs its empty directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut s =
            Sshd { child: None, port: free_port(), host_key, client_key: root.join("client_ed25519"), user, dir };
        s.write_config();
        s.restart();
        s
    }

    fn write_config(&self) {
        let root = self.dir.path();
        let cfg = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile none\nAuthorizedKeysFile {keys}\n\
             StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
            port = self.port,
            host = root.join("host_ed25519").display(),
            keys = root.join("authorized_keys").display(),
        );
        std::fs::write(root.join("sshd_config"), cfg).unwrap();
    }

    /// The payer's directory `name` (`inbound`, `outbound`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Stops the server (connections are refused until [`Sshd::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.stop();
        let sshd = std::env::var("CLEARWAY_TEST_SSHD")
            .expect("CLEARWAY_TEST_SSHD: run scripts/test (it installs openssh-server and sets it to /usr/sbin/sshd)");
        let log = std::fs::File::create(self.dir.path().join("sshd.log")).unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The `[payers.ID.sftp]` table for this server (`host_key` pinned
    /// unless another is given).
    pub fn payer_table(&self, payer: &str, host_key: Option<&str>) -> String {
        format!(
            "[payers.{payer}.sftp]\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{user}\"\nkey_file = \"{key}\"\n\
             host_key = \"{hk}\"\nupload_dir = \"{up}\"\ndownload_dir = \"{down}\"\n",
            port = self.port,
            user = self.user,
            key = self.client_key.display(),
            hk = host_key.unwrap_or(&self.host_key),
            up = self.path("inbound").display(),
            down = self.path("outbound").display(),
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
