use proxmox_client::{Client, GuestKind, ResourceFilter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_lifecycle_creates_clones_and_destroys_through_the_guest_handle() {
    let lab = homelab_sim::lab::Lab::builder().start().await.unwrap();
    let client = Client::builder()
        .base_url(lab.pve_url())
        .api_token(lab.token_id(), lab.token_secret())
        .pin_fingerprint(lab.fingerprint())
        .build()
        .unwrap();
    let node = client.nodes().await.unwrap()[0].node.clone();
    let before = lab.requests();
    let done =
        homelab_examples::guest_lifecycle::run(&client, &node, "local-lvm", "vmbr0", 300, 301)
            .await
            .unwrap();
    assert_eq!(done.clone_name.as_deref(), Some("example-301"));
    assert_eq!(done.log.len(), 4, "{:?}", done.log);
    assert!(
        done.log[1].starts_with("cloned 300 to 301"),
        "{:?}",
        done.log
    );
    // Both are gone, and the simulator saw the four mutating calls (create, clone, 2 × destroy).
    let left = client
        .cluster_resources(Some(ResourceFilter::Vm))
        .await
        .unwrap();
    assert!(
        !left.iter().any(|r| matches!(r.vmid, Some(300 | 301))),
        "{left:?}"
    );
    let gone = client
        .node(&node)
        .guest(GuestKind::Qemu, 300)
        .config()
        .await
        .unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    let after = lab.requests();
    assert_eq!(after.mutating - before.mutating, 4);
    lab.shutdown().await;
}
