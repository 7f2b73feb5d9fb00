//! The agent's side: one blocking request and its answer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::{Error, Op, Request, Response};

/// Sends `op` with `token` to the engine behind `socket` and returns the answer's data.
pub fn call(socket: &Path, token: &str, op: &Op) -> Result<serde_json::Value, Error> {
    let stream = UnixStream::connect(socket).map_err(|source| Error::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut line = serde_json::to_vec(&Request {
        token: token.to_string(),
        op: op.clone(),
    })
    .map_err(|e| Error::BadResponse(e.to_string()))?;
    line.push(b'\n');
    (&stream).write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    let response: Response = serde_json::from_str(answer.trim_end())
        .map_err(|e| Error::BadResponse(format!("{e}: {answer:?}")))?;
    if response.ok {
        Ok(response.data.unwrap_or(serde_json::Value::Null))
    } else {
        Err(Error::Refused(
            response
                .error
                .unwrap_or_else(|| "refused without a reason".into()),
        ))
    }
}
