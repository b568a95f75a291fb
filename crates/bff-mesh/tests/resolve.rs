//! A resolver of one's own feeding a service with add, remove and reset updates, applied without
//! dropping the endpoints that remain.

use bff_config::{Format, Loader};
use bff_mesh::{Mesh, Resolve, Update};
use std::{collections::HashMap, future::Future, pin::Pin, time::Duration};
use tokio::sync::{mpsc, oneshot};

/// Sends the updates it is given, one per step, when the test says so.
struct Scripted(mpsc::Receiver<(Update, oneshot::Sender<()>)>);

impl Resolve for Scripted {
    fn resolve(
        mut self: Box<Self>,
        updates: mpsc::Sender<Update>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            while let Some((u, done)) = self.0.recv().await {
                if updates.send(u).await.is_err() {
                    return;
                }
                let _ = done.send(());
            }
        })
    }
}

fn addresses(mesh: &Mesh) -> Vec<String> {
    mesh.snapshot()[0]
        .endpoints
        .iter()
        .map(|e| e.address.clone())
        .collect()
}

#[tokio::test]
async fn add_remove_and_reset_updates_are_applied() {
    let config = Loader::new()
        .with_env(HashMap::new())
        .load_str(
            "[services.users]\nendpoints = [\"10.0.0.1:80\"]\n",
            Format::Toml,
        )
        .unwrap();
    let mesh = Mesh::from_config(&config).unwrap();
    let (tx, rx) = mpsc::channel(1);
    let _task = mesh.resolve_with("users", Scripted(rx)).unwrap();
    let step = |u: Update| {
        let tx = tx.clone();
        async move {
            let (done, wait) = oneshot::channel();
            tx.send((u, done)).await.unwrap();
            wait.await.unwrap();
            // The update is applied right after it is received.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    step(Update::Add(vec![
        "10.0.0.2:80".into(),
        "10.0.0.1:80".into(),
    ]))
    .await;
    assert_eq!(addresses(&mesh), ["10.0.0.1:80", "10.0.0.2:80"]);
    step(Update::Remove(vec!["10.0.0.1:80".into()])).await;
    assert_eq!(addresses(&mesh), ["10.0.0.2:80"]);
    step(Update::Reset(vec![
        "10.0.0.3:80".into(),
        "10.0.0.4:80".into(),
    ]))
    .await;
    assert_eq!(addresses(&mesh), ["10.0.0.3:80", "10.0.0.4:80"]);
    // A bad update is refused and changes nothing.
    step(Update::Add(vec!["not an address".into()])).await;
    assert_eq!(addresses(&mesh), ["10.0.0.3:80", "10.0.0.4:80"]);
    assert!(
        mesh.resolve_with("nope", Scripted(mpsc::channel(1).1))
            .is_err()
    );
}
