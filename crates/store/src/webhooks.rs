//! The webhook tables (issue 12) on both engines: subscriptions with their cursor into the
//! tenant's chain, and the delivery log that is also the retry queue and the dead-letter queue.

use super::{Pool, SqlStore};
use crate::{Attempt, Delivery, NewDelivery, StoreError, WebhookSubscription};
use vigil_core::ids::TenantId;
use vigil_core::time::Timestamp;

const SUB_COLUMNS: &str = "id, tenant_id, url, kinds, filter, secrets, cursor_seq, created_at";
const DELIVERY_COLUMNS: &str =
    "id, subscription_id, tenant_id, message_id, event_type, body, status, attempts, \
     next_attempt_at, last_status, last_error, created_at, delivered_at";

type SubRow = (String, String, String, String, String, String, i64, String);
type DeliveryRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    String,
    Option<String>,
);

fn sub(r: SubRow) -> WebhookSubscription {
    WebhookSubscription {
        id: r.0,
        tenant_id: r.1,
        url: r.2,
        kinds: r
            .3
            .split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect(),
        filter: r.4,
        secrets: r.5,
        cursor: r.6,
        created_at: r.7,
    }
}

fn delivery(r: DeliveryRow) -> Delivery {
    Delivery {
        id: r.0,
        subscription_id: r.1,
        tenant_id: r.2,
        message_id: r.3,
        event_type: r.4,
        body: r.5,
        status: r.6,
        attempts: r.7,
        next_attempt_at: r.8,
        last_status: r.9,
        last_error: r.10,
        created_at: r.11,
        delivered_at: r.12,
    }
}

fn err(op: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::from_sqlx(op, e)
}

impl SqlStore {
    pub(super) async fn wh_create(&self, s: &WebhookSubscription) -> Result<(), StoreError> {
        let sql = format!("INSERT INTO webhook_subscriptions ({SUB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)");
        let _guard = self.write_guard().await;
        with_pool!(self, p => sqlx::query(&sql)
            .bind(&s.id).bind(&s.tenant_id).bind(&s.url).bind(s.kinds.join(","))
            .bind(&s.filter).bind(&s.secrets).bind(s.cursor).bind(&s.created_at)
            .execute(p).await.map(|_| ()))
        .map_err(err("storing a webhook subscription"))
    }

    pub(super) async fn wh_list(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<WebhookSubscription>, StoreError> {
        let op = "reading webhook subscriptions";
        let rows: Vec<SubRow> = match tenant {
            Some(t) => {
                let sql = format!("SELECT {SUB_COLUMNS} FROM webhook_subscriptions WHERE tenant_id = $1 ORDER BY created_at, id");
                with_pool!(self, p => sqlx::query_as(&sql).bind(t.as_str()).fetch_all(p).await)
            }
            None => {
                let sql = format!("SELECT {SUB_COLUMNS} FROM webhook_subscriptions ORDER BY tenant_id, created_at, id");
                with_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await)
            }
        }
        .map_err(err(op))?;
        Ok(rows.into_iter().map(sub).collect())
    }

    pub(super) async fn wh_delete(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let op = "deleting a webhook subscription";
        let _guard = self.write_guard().await;
        with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(err(op))?;
            let n = sqlx::query("DELETE FROM webhook_subscriptions WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str()).bind(id).execute(&mut *tx).await.map_err(err(op))?
                .rows_affected();
            sqlx::query("DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND subscription_id = $2")
                .bind(tenant.as_str()).bind(id).execute(&mut *tx).await.map_err(err(op))?;
            tx.commit().await.map_err(err(op))?;
            Ok(n > 0)
        })
    }

    pub(super) async fn wh_set_secrets(
        &self,
        tenant: &TenantId,
        id: &str,
        secrets: &str,
    ) -> Result<bool, StoreError> {
        let _guard = self.write_guard().await;
        with_pool!(self, p => sqlx::query(
            "UPDATE webhook_subscriptions SET secrets = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(secrets).bind(tenant.as_str()).bind(id).execute(p).await
            .map(|r| r.rows_affected() > 0))
        .map_err(err("rotating a webhook secret"))
    }

    pub(super) async fn wh_enqueue(
        &self,
        tenant: &TenantId,
        id: &str,
        deliveries: &[NewDelivery],
        cursor: Option<i64>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let op = "enqueueing webhook deliveries";
        let sql = format!(
            "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, NULL, NULL, $8, NULL) \
             ON CONFLICT (subscription_id, message_id) DO NOTHING"
        );
        let due = at.micros() / 1000;
        let _guard = self.write_guard().await;
        with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(err(op))?;
            for d in deliveries {
                sqlx::query(&sql)
                    .bind(&d.id).bind(id).bind(tenant.as_str()).bind(&d.message_id)
                    .bind(&d.event_type).bind(&d.body).bind(due).bind(at.to_rfc3339())
                    .execute(&mut *tx).await.map_err(err(op))?;
            }
            if let Some(c) = cursor {
                // Only forward: two workers racing cannot move it back.
                sqlx::query("UPDATE webhook_subscriptions SET cursor_seq = $1 \
                             WHERE tenant_id = $2 AND id = $3 AND cursor_seq < $1")
                    .bind(c).bind(tenant.as_str()).bind(id)
                    .execute(&mut *tx).await.map_err(err(op))?;
            }
            tx.commit().await.map_err(err(op))
        })
    }

    pub(super) async fn wh_due(&self, now: i64, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2"
        );
        let rows: Vec<DeliveryRow> =
            with_pool!(self, p => sqlx::query_as(&sql).bind(now).bind(limit).fetch_all(p).await)
                .map_err(err("reading due webhook deliveries"))?;
        Ok(rows.into_iter().map(delivery).collect())
    }

    pub(super) async fn wh_record(
        &self,
        delivery_id: &str,
        attempt: &Attempt,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let op = "recording a webhook attempt";
        let (status, next, code, error, delivered) = match attempt {
            Attempt::Delivered { status } => {
                ("delivered", 0, Some(*status), None, Some(at.to_rfc3339()))
            }
            Attempt::Retry {
                next_at,
                status,
                error,
            } => ("pending", *next_at, *status, Some(error.clone()), None),
            Attempt::Dead { status, error } => ("dead", 0, *status, Some(error.clone()), None),
        };
        let _guard = self.write_guard().await;
        with_pool!(self, p => sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, next_attempt_at = $2, \
             last_status = $3, last_error = $4, delivered_at = $5 WHERE id = $6 AND status = 'pending'")
            .bind(status).bind(next).bind(code).bind(error).bind(delivered).bind(delivery_id)
            .execute(p).await.map(|_| ()))
        .map_err(err(op))
    }

    pub(super) async fn wh_deliveries(
        &self,
        tenant: &TenantId,
        id: &str,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE tenant_id = $1 AND subscription_id = $2 AND ($3 = '' OR status = $3) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let rows: Vec<DeliveryRow> = with_pool!(self, p => sqlx::query_as(&sql)
            .bind(tenant.as_str()).bind(id).bind(status.unwrap_or("")).bind(limit)
            .fetch_all(p).await)
        .map_err(err("reading webhook deliveries"))?;
        Ok(rows.into_iter().map(delivery).collect())
    }

    pub(super) async fn wh_retry(
        &self,
        tenant: &TenantId,
        id: &str,
        delivery_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _guard = self.write_guard().await;
        with_pool!(self, p => sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1 \
             WHERE tenant_id = $2 AND subscription_id = $3 AND id = $4 AND status <> 'delivered'")
            .bind(now).bind(tenant.as_str()).bind(id).bind(delivery_id).execute(p).await
            .map(|r| r.rows_affected() > 0))
        .map_err(err("requeueing a webhook delivery"))
    }
}
