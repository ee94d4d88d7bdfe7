//! The request handlers, one per endpoint (`ListRestoreJobStatus.do`, `2/ListUsers.do`,
//! `GetRestoreJobReport.do`, and the 404 page for anything else), with the request bodies
//! they read and the replies they build.

use super::super::faults::{Injected, LoginFault, MALFORMED_BODIES};
use super::super::job::{write_object, Phase, SimJob};
use super::stats::InFlight;
use super::{
    lock, ReportFault, Shared, INCORRECT_CREDENTIALS_MESSAGE, PASSWORD_EXPIRED_MESSAGE,
    REPORT_NOT_ALLOWED_MESSAGE, ROLE_DENIED_MESSAGE,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde_json::{json, Value};
use std::sync::Arc;

/// The request body, read leniently: the real server ignores what it does not know, and a
/// missing field is simply empty.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct ListRequest {
    #[serde(rename = "SysUser")]
    sys_user: String,
    #[serde(rename = "SysPwd")]
    sys_pwd: String,
    #[serde(rename = "Owner")]
    owner: String,
    #[serde(rename = "LoginName")]
    login_name: String,
    #[serde(rename = "RestoreDate")]
    restore_date: String,
}

/// `POST /obs/api/json/ListRestoreJobStatus.do`.
pub(crate) async fn list_restore_job_status(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    let _in_flight = InFlight::enter(&shared.stats);
    let epoch = shared.current_epoch();
    let request: Result<ListRequest, _> = serde_json::from_slice(&body);
    if let Ok(req) = &request {
        if let Ok(date) = NaiveDate::parse_from_str(&req.restore_date, "%Y-%m-%d") {
            *lock(&shared.stats.per_user_date)
                .entry((req.login_name.clone(), date))
                .or_default() += 1;
        }
    }
    // Dice are rolled on arrival, so the fault sequence follows the request order.
    let (latency, injected) = {
        let mut world = lock(&shared.world);
        let latency = world.dice.faults().latency;
        (latency, world.dice.roll())
    };
    if !latency.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(latency) => {}
            // Going down or stopping ends the wait; the cut connection carries no answer.
            () = epoch.cancelled() => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    }
    match injected {
        Injected::None => {}
        Injected::Http500 => return http_500(),
        Injected::Malformed(i) => {
            return json_response(MALFORMED_BODIES[i % MALFORMED_BODIES.len()].to_owned())
        }
        Injected::ApiError => {
            return api_error(
                "Unexpected error, please try again later",
                "com.ahsay.obs.core.ae",
            )
        }
    }
    let Ok(req) = request else {
        return api_error(
            "Invalid request: the body is not JSON",
            "com.ahsay.obs.core.q",
        );
    };
    if req.sys_user != shared.sys_user || req.sys_pwd != shared.sys_pwd {
        return api_error(INCORRECT_CREDENTIALS_MESSAGE, "com.ahsay.obs.core.dbs.c");
    }
    let now = shared.clock.now();
    let world = lock(&shared.world);
    if world.password_expired {
        return api_error(PASSWORD_EXPIRED_MESSAGE, "com.ahsay.obs.core.dbs.p");
    }
    let Ok(date) = NaiveDate::parse_from_str(&req.restore_date, "%Y-%m-%d") else {
        return api_error(
            &format!(
                "Invalid RestoreDate \"{}\", expected yyyy-MM-dd",
                req.restore_date
            ),
            "com.ahsay.obs.core.q",
        );
    };
    let not_found = || {
        api_error(
            &format!("User \"{}\" not found", req.login_name),
            "com.ahsay.obs.core.dbs.d",
        )
    };
    let date_fault = world.login_date_faults.get(&(req.login_name.clone(), date));
    match world.login_faults.get(&req.login_name).or(date_fault) {
        None => {}
        Some(LoginFault::Http500) => return http_500(),
        Some(LoginFault::NotFound) => return not_found(),
        Some(LoginFault::ApiError(message)) => return api_error(message, "com.ahsay.obs.core.x"),
        Some(LoginFault::RawBody(body)) => return json_response(body.clone()),
    }
    // Login names are case-insensitive, as in AhsayCBS: the reply spells them as stored.
    let user = world.users.get(&req.login_name).or_else(|| {
        world
            .users
            .iter()
            .find(|(login, _)| login.eq_ignore_ascii_case(&req.login_name))
            .map(|(_, user)| user)
    });
    let Some(user) = user else {
        return not_found();
    };
    // An empty Owner means "any": a system user sees every backup user.
    if !req.owner.is_empty() && req.owner != user.owner {
        return not_found();
    }
    let mut listed: Vec<&SimJob> = world
        .jobs_of(&req.login_name)
        .filter(|j| j.listed_on(shared.tz) == date)
        .filter(|j| j.phase(now) != Phase::NotStarted)
        .collect();
    listed.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(a.backup_set_id.cmp(&b.backup_set_id))
    });
    let items: Vec<String> = listed
        .iter()
        .map(|j| write_object(&j.render(shared.tz, now)))
        .collect();
    json_response(format!(
        "{{\"Status\":\"OK\",\"Data\":[{}]}}",
        items.join(",")
    ))
}

/// The body of `2/ListUsers.do`: credentials and the optional `reseller` filter.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct ListUsersRequest {
    #[serde(rename = "SysUser")]
    sys_user: String,
    #[serde(rename = "SysPwd")]
    sys_pwd: String,
    reseller: String,
}

/// `POST /obs/api/json/2/ListUsers.do`: every user in one reply, under the key `User`.
pub(crate) async fn list_users(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let _in_flight = InFlight::enter(&shared.stats);
    let Ok(req) = serde_json::from_slice::<ListUsersRequest>(&body) else {
        return api_error(
            "Invalid request: the body is not JSON",
            "com.ahsay.obs.core.q",
        );
    };
    if req.sys_user != shared.sys_user || req.sys_pwd != shared.sys_pwd {
        return api_error(INCORRECT_CREDENTIALS_MESSAGE, "com.ahsay.obs.core.dbs.c");
    }
    let world = lock(&shared.world);
    if world.password_expired {
        return api_error(PASSWORD_EXPIRED_MESSAGE, "com.ahsay.obs.core.dbs.p");
    }
    if world.list_users_denied {
        return api_error(ROLE_DENIED_MESSAGE, "com.ahsay.obs.core.dbs.r");
    }
    if world.missing_resellers.contains(&req.reseller) {
        return api_error(
            &format!("Reseller '{}' not found", req.reseller),
            "com.ahsay.obs.core.dbs.d",
        );
    }
    // Written out directly rather than as one `Value`: a padded listing is tens of MB.
    let filler = "x".repeat(world.list_users_padding);
    let mut body = String::from(r#"{"Status":"OK","User":["#);
    for (i, u) in (world.users.values())
        .filter(|u| req.reseller.is_empty() || u.owner == req.reseller)
        .enumerate()
    {
        if i > 0 {
            body.push(',');
        }
        let item = json!({"ID": u.user_id, "LoginName": u.login, "Owner": u.owner}).to_string();
        if filler.is_empty() {
            body.push_str(&item);
        } else {
            body.push_str(&item[..item.len() - 1]);
            body.push_str(r#","Settings":{"Notes":""#);
            body.push_str(&filler);
            body.push_str(r#"","Quota":[1,2,{"x":null}]}}"#);
        }
    }
    body.push_str("]}");
    json_response(body)
}

#[derive(serde::Deserialize)]
struct ReportRequest {
    #[serde(rename = "SysUser", default)]
    sys_user: String,
    #[serde(rename = "SysPwd", default)]
    sys_pwd: String,
    #[serde(rename = "LoginName", default)]
    login_name: String,
    #[serde(rename = "BackupSetID", default)]
    backup_set_id: String,
    #[serde(rename = "JobID", default)]
    job_id: String,
}

/// `POST /obs/api/json/GetRestoreJobReport.do`: one Report object, times in epoch
/// milliseconds, with plausible logs (errors for failed jobs, a warning for warned ones).
pub(crate) async fn get_restore_job_report(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    let _in_flight = InFlight::enter(&shared.stats);
    let epoch = shared.current_epoch();
    let fault = {
        let mut world = lock(&shared.world);
        world.report_requests += 1;
        world.report_fault
    };
    match fault {
        None => {}
        Some(ReportFault::ReadOnlyRole) => {
            return api_error(REPORT_NOT_ALLOWED_MESSAGE, "com.ahsay.obs.core.dbs.r")
        }
        Some(ReportFault::Hang) => {
            epoch.cancelled().await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    let Ok(req) = serde_json::from_slice::<ReportRequest>(&body) else {
        return api_error(
            "Invalid request: the body is not JSON",
            "com.ahsay.obs.core.q",
        );
    };
    if req.sys_user != shared.sys_user || req.sys_pwd != shared.sys_pwd {
        return api_error(INCORRECT_CREDENTIALS_MESSAGE, "com.ahsay.obs.core.dbs.c");
    }
    let world = lock(&shared.world);
    let Some(job) = world
        .jobs_of(&req.login_name)
        .find(|j| j.backup_set_id == req.backup_set_id && j.job_id(shared.tz) == req.job_id)
    else {
        return api_error(
            &format!("Restore job \"{}\" not found", req.job_id),
            "com.ahsay.obs.core.dbs.d",
        );
    };
    let start = job.start.timestamp_millis();
    let end = job.end.map_or(start, |e| e.timestamp_millis());
    let status = &job.final_status;
    let files = job.size_bytes / 4096 + 1;
    let mut logs = vec![json!({"Type": "info", "Time": start, "Message": "Start restore"})];
    if status.contains("ERROR") || status.contains("FAIL") || status.contains("INTERRUPTED") {
        logs.push(json!({"Type": "file", "Time": start + 500, "Message": format!("[ERROR] Cannot write \"/restore/{}/data.db\": Access is denied", job.backup_set_name)}));
        logs.push(json!({"Type": "info", "Time": end, "Message": format!("[ERROR] Restore Completed with error(s) ({status})")}));
    } else if status.contains("WARNING") {
        logs.push(json!({"Type": "file", "Time": start + 500, "Message": "[WARN] File skipped: locked by another process"}));
    }
    logs.push(json!({"Type": "info", "Time": end, "Message": "Restore finished"}));
    let body = json!({
        "Status": "OK",
        "Data": {
            "ID": req.job_id,
            "StartTime": start,
            "EndTime": end,
            "FromIp": "127.0.0.1",
            "DestinationID": job.destination_id.clone().unwrap_or_default(),
            "Status": status,
            "TotalFileCount": files,
            "TotalFileSize": job.size_bytes,
            "Logs": logs,
        }
    });
    json_response(body.to_string())
}

/// Anything else: what a Tomcat answers for an unknown path.
pub(crate) async fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
        "<html><body><h1>HTTP Status 404 - Not Found</h1></body></html>",
    )
        .into_response()
}

/// Puts a UTF-8 byte order mark before every JSON reply while the world says so.
pub(crate) async fn byte_order_mark(
    State(shared): State<Arc<Shared>>,
    response: Response,
) -> Response {
    let json = (response.headers().get(header::CONTENT_TYPE))
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !json || !lock(&shared.world).byte_order_mark {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return http_500();
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut marked = "\u{feff}".as_bytes().to_vec();
    marked.extend_from_slice(&body);
    Response::from_parts(parts, axum::body::Body::from(marked))
}

fn json_response(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        body,
    )
        .into_response()
}

fn api_error(message: &str, expt_type: &str) -> Response {
    let body: Value = json!({"Status": "Error", "Message": message, "ExptType": expt_type});
    json_response(body.to_string())
}

fn http_500() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
        "<html><body><h1>HTTP Status 500 - Internal Server Error</h1></body></html>",
    )
        .into_response()
}
