use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time},
    jiff::Timestamp,
};

use super::*;
use crate::{
    api::tenant_control_plane::{KubernetesSpec, NetworkProfile},
    pki::{Authority, KeyAlgorithm},
    tenant::meta::tests::tenant,
};

fn spec() -> TenantControlPlaneSpec {
    TenantControlPlaneSpec {
        kubernetes: KubernetesSpec {
            version: "v1.37.2".into(),
            ..KubernetesSpec::default()
        },
        network_profile: NetworkProfile {
            address: Some("192.0.2.10".into()),
            ..NetworkProfile::default()
        },
        ..TenantControlPlaneSpec::default()
    }
}

fn params() -> IssueParams {
    let mut params = IssueParams::new(OffsetDateTime::now_utc());
    // ECDSA keeps the unit tests fast; the algorithm is a parameter like any other.
    params.algorithm = KeyAlgorithm::EcdsaP256;
    params
}

fn resolved(ca: &Authority) -> Resolved {
    Resolved {
        name: "default".into(),
        driver: Driver::Etcd,
        etcd_ca: Some(
            Authority::from_pem(ca.certificate_pem().as_bytes(), ca.key_pem().map(str::as_bytes))
                .expect("CA"),
        ),
        copied_certificate: None,
        etcd_admin: None,
        wiring: deployment::DatastoreWiring {
            etcd_servers: vec!["https://127.0.0.1:2379".into()],
            prefix: "/default_k8s_133".into(),
        },
    }
}

fn run(observed: &Observed) -> Desired {
    run_at(observed, OffsetDateTime::now_utc())
}

/// [`run`] with the operator's clock at `now`.
fn run_at(observed: &Observed, now: OffsetDateTime) -> Desired {
    let tenant = tenant("k8s-133", "default");
    let spec = spec();
    desired(
        &Inputs {
            tenant: &tenant,
            spec: &spec,
            provisioned: true,
            params: IssueParams { now, ..params() },
            batch_window: Duration::from_secs(2),
            tokens: deployment::TokenSettings::default(),
            ca_rotation: Default::default(),
            superseded_groups_granted: true,
        },
        observed,
    )
}

fn secrets(out: &Desired) -> BTreeMap<String, Secret> {
    out.objects
        .iter()
        .filter_map(|o| match o {
            Object::Secret(s) => Some((
                s.metadata
                    .name
                    .clone()
                    .unwrap_or_default()
                    .trim_start_matches("k8s-133-")
                    .to_string(),
                s.as_ref().clone(),
            )),
            _ => None,
        })
        .collect()
}

fn deployment_of(out: &Desired) -> Option<&Deployment> {
    out.objects.iter().find_map(|o| match o {
        Object::Deployment(d) => Some(d.as_ref()),
        _ => None,
    })
}

/// A provisioned tenant: what the first pass writes, stored, with the Deployment
/// it applies and our field manager's last change a minute ago.
fn provisioned(ca: &Authority) -> Observed {
    let empty = Observed {
        secrets: BTreeMap::new(),
        service: None,
        deployment: None,
        egress_selector: None,
        datastore: Ok(resolved(ca)),
    };
    let first = run(&empty);
    assert!(first.problems.is_empty(), "{:?}", first.problems);
    let a_minute_ago = Timestamp::now() - std::time::Duration::from_secs(60);
    let mut stored = secrets(&first);
    for secret in stored.values_mut() {
        secret.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(labels::FIELD_MANAGER.into()),
            operation: Some("Apply".into()),
            time: Some(Time(a_minute_ago)),
            ..ManagedFieldsEntry::default()
        }]);
    }
    Observed {
        secrets: stored,
        service: None,
        deployment: deployment_of(&first).cloned(),
        egress_selector: None,
        datastore: Ok(resolved(ca)),
    }
}

fn datastore_ca() -> Authority {
    let p = params();
    Authority::generate("etcd-ca", p.algorithm, p.ca_validity, p.now).expect("datastore CA")
}

#[test]
fn a_provisioned_tenant_needs_no_secret_write() {
    let observed = provisioned(&datastore_ca());
    let again = run(&observed);
    assert!(secrets(&again).is_empty(), "{:?}", secrets(&again).keys());
    assert_eq!(again.rollout_held_for, None);
}

#[test]
fn stripped_labels_come_back_and_the_material_stays() {
    let mut observed = provisioned(&datastore_ca());
    for suffix in ["ca", "sa-certificate", "datastore-config"] {
        let secret = observed.secrets.get_mut(suffix).expect("stored");
        secret.metadata.labels = None;
    }
    let out = run(&observed);
    let written = secrets(&out);
    assert_eq!(
        written.keys().map(String::as_str).collect::<Vec<_>>(),
        ["ca", "datastore-config", "sa-certificate"]
    );
    for (suffix, secret) in &written {
        assert_eq!(
            secret_data(secret),
            secret_data(&observed.secrets[suffix]),
            "{suffix}: the data is written back unchanged"
        );
        let labels = secret.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels[labels::NAME], "k8s-133");
        assert_eq!(labels[labels::COMPONENT], *suffix);
    }
    assert!(!out.ca_rotation, "a missing label never means a new CA");
}

#[test]
fn a_datastore_problem_holds_back_only_what_depends_on_it() {
    let mut observed = provisioned(&datastore_ca());
    observed.datastore = Err("DataStore default: not found".into());
    let rotated = observed
        .secrets
        .get_mut("api-server-certificate")
        .expect("stored");
    rotated.metadata.annotations = Some(BTreeMap::from([(labels::ROTATE.to_string(), String::new())]));
    let out = run(&observed);
    assert_eq!(
        secrets(&out).keys().map(String::as_str).collect::<Vec<_>>(),
        ["api-server-certificate"]
    );
    assert!(
        deployment_of(&out).is_none(),
        "the Deployment waits for the DataStore"
    );
    assert_eq!(
        out.problems,
        [Problem::DataStore("DataStore default: not found".into())]
    );
}

#[test]
fn rotated_material_is_written_at_once_and_the_rollout_waits_for_the_batch() {
    let mut observed = provisioned(&datastore_ca());
    let deployed = observed
        .deployment
        .as_ref()
        .and_then(deployment::deployed_checksum);
    observed
        .secrets
        .get_mut("front-proxy-client-certificate")
        .expect("stored")
        .metadata
        .annotations = Some(BTreeMap::from([(labels::ROTATE.to_string(), String::new())]));
    let out = run(&observed);
    let written = secrets(&out);
    assert_eq!(
        written.keys().collect::<Vec<_>>(),
        ["front-proxy-client-certificate"]
    );
    let stamp = written["front-proxy-client-certificate"]
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()[labels::ROTATE]
        .clone();
    assert!(stamp.ends_with('Z'), "stamped at once: {stamp}");
    let held = deployment_of(&out).and_then(deployment::deployed_checksum);
    assert_eq!(
        held, deployed,
        "the pod template keeps its checksum while the batch settles"
    );
    assert_eq!(out.rollout_held_for, Some(Duration::from_secs(2)));

    // Once stored and settled, the next pass rolls: the checksum moves, nothing is re-issued.
    for (suffix, secret) in written {
        let mut secret = secret;
        secret.metadata.managed_fields = observed.secrets[&suffix].metadata.managed_fields.clone();
        observed.secrets.insert(suffix, secret);
    }
    let settled = run(&observed);
    assert!(secrets(&settled).is_empty());
    assert_eq!(settled.rollout_held_for, None);
    assert_ne!(
        deployment_of(&settled).and_then(deployment::deployed_checksum),
        deployed
    );
}

#[test]
fn without_an_address_only_the_service_is_applied() {
    let tenant = tenant("k8s-133", "default");
    let spec = TenantControlPlaneSpec {
        network_profile: NetworkProfile::default(),
        ..spec()
    };
    let ca = datastore_ca();
    let observed = Observed {
        secrets: BTreeMap::new(),
        service: None,
        deployment: None,
        egress_selector: None,
        datastore: Ok(resolved(&ca)),
    };
    let out = desired(
        &Inputs {
            tenant: &tenant,
            spec: &spec,
            provisioned: false,
            params: params(),
            batch_window: Duration::from_secs(2),
            tokens: deployment::TokenSettings::default(),
            ca_rotation: Default::default(),
            superseded_groups_granted: true,
        },
        &observed,
    );
    assert!(matches!(out.objects.as_slice(), [Object::Service(_)]));
    assert_eq!(out.problems, [Problem::WaitingForAddress("k8s-133".into())]);
}

#[test]
fn debug_output_names_objects_and_data_keys_but_never_key_material() {
    let observed = provisioned(&datastore_ca());
    let mut rotated = observed;
    rotated
        .secrets
        .get_mut("ca")
        .expect("stored")
        .metadata
        .annotations = Some(BTreeMap::from([(labels::ROTATE.to_string(), String::new())]));
    let out = run(&rotated);
    let printed = format!("{out:?}");
    assert!(
        printed.contains("k8s-133-ca") && printed.contains("ca.key"),
        "{printed}"
    );
    assert!(!printed.contains("PRIVATE KEY"), "key material in Debug output");
    let plan_input = format!("{:?}", stored_secrets(&rotated.secrets));
    assert!(
        !plan_input.contains("PRIVATE KEY"),
        "key material in Debug output"
    );
}

fn run_with(spec: &TenantControlPlaneSpec, observed: &Observed) -> Desired {
    let tenant = tenant("k8s-133", "default");
    desired(
        &Inputs {
            tenant: &tenant,
            spec,
            provisioned: true,
            params: params(),
            batch_window: Duration::from_secs(2),
            tokens: deployment::TokenSettings::default(),
            ca_rotation: Default::default(),
            superseded_groups_granted: true,
        },
        observed,
    )
}

/// Where the egress selector ConfigMap comes in the apply order (or its removal).
fn egress_positions(out: &Desired) -> (Option<usize>, Option<usize>, Option<usize>) {
    let at = |f: &dyn Fn(&Object) -> bool| out.objects.iter().position(f);
    (
        at(&|o| matches!(o, Object::ConfigMap(_))),
        at(&|o| matches!(o, Object::Deployment(_))),
        at(&|o| matches!(o, Object::RemoveConfigMap(_))),
    )
}

#[test]
fn the_egress_selector_config_map_comes_before_the_deployment_and_goes_after_it() {
    let ca = datastore_ca();
    let empty = Observed {
        secrets: BTreeMap::new(),
        service: None,
        deployment: None,
        egress_selector: None,
        datastore: Ok(resolved(&ca)),
    };
    let mut with_addon = spec();
    with_addon.addons = Some(crate::api::tenant_control_plane::Addons {
        konnectivity: Some(Default::default()),
        ..Default::default()
    });
    let (config_map, deployment, removal) = egress_positions(&run_with(&with_addon, &empty));
    assert!(
        config_map.is_some() && config_map < deployment,
        "{config_map:?} {deployment:?}"
    );
    assert_eq!(removal, None);

    // The addon removed: the stored ConfigMap goes, after the Deployment that stops mounting it.
    let with_config_map = Observed {
        egress_selector: Some(konnectivity::egress_selector_config_map(&tenant(
            "k8s-133", "default",
        ))),
        ..empty
    };
    let (config_map, deployment, removal) = egress_positions(&run_with(&spec(), &with_config_map));
    assert_eq!(config_map, None);
    assert!(
        removal.is_some() && removal > deployment,
        "{removal:?} {deployment:?}"
    );
    // Nothing stored, nothing to remove.
    let nothing = Observed {
        egress_selector: None,
        ..with_config_map
    };
    assert_eq!(egress_positions(&run_with(&spec(), &nothing)).2, None);
}

#[test]
fn a_clock_ten_minutes_off_re_issues_nothing() {
    let observed = provisioned(&datastore_ca());
    let ten_minutes = time::Duration::minutes(10);
    for now in [
        OffsetDateTime::now_utc() - ten_minutes,
        OffsetDateTime::now_utc() + ten_minutes,
    ] {
        let out = run_at(&observed, now);
        assert!(out.problems.is_empty(), "at {now}: {:?}", out.problems);
        assert!(
            secrets(&out).is_empty(),
            "at {now}: {:?} re-issued ({:?})",
            secrets(&out).keys(),
            out.rotated
        );
    }
}

/// `observed` with the tenant CA replaced by `ca` (certificate and key).
fn with_tenant_ca(mut observed: Observed, ca: Authority) -> Observed {
    let data = crate::pki::StoredCa::settled(ca).secret_data(&catalog::TENANT_CA);
    let secret = observed.secrets.get_mut("ca").expect("stored CA");
    secret.data = Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect());
    observed
}

#[test]
fn a_ca_outside_its_validity_is_reported_and_nothing_it_signs_is_touched() {
    let p = params();
    let hour = Duration::from_secs(3600);
    let expired =
        Authority::generate("kubernetes", p.algorithm, hour, p.now - time::Duration::hours(3)).expect("CA");
    let not_yet = Authority::generate(
        "kubernetes",
        p.algorithm,
        p.ca_validity,
        p.now + time::Duration::days(1),
    )
    .expect("CA");
    for (ca, says) in [(expired, "expired at"), (not_yet, "not valid before")] {
        let observed = with_tenant_ca(provisioned(&datastore_ca()), ca);
        let out = run(&observed);
        let written = secrets(&out);
        assert!(
            !written.contains_key("ca") && !written.contains_key("api-server-certificate"),
            "{says}: {:?}",
            written.keys()
        );
        let reported = out
            .problems
            .iter()
            .map(ToString::to_string)
            .find(|p| p.contains("k8s-133-ca"));
        let reported = reported.unwrap_or_else(|| panic!("{says}: not reported: {:?}", out.problems));
        assert!(
            reported.contains(says) && reported.contains("rotate"),
            "{reported}"
        );
        assert!(!out.ca_rotation, "{says}: no rotation without a request");
    }
}

#[test]
fn a_rotate_annotation_that_is_neither_empty_nor_a_time_is_reported_and_rotates_nothing() {
    let mut observed = provisioned(&datastore_ca());
    let secret = observed
        .secrets
        .get_mut("api-server-certificate")
        .expect("stored");
    secret.metadata.annotations = Some([(labels::ROTATE.to_string(), "yes please".to_string())].into());
    let out = run(&observed);
    assert!(secrets(&out).is_empty(), "{:?}", secrets(&out).keys());
    assert_eq!(
        out.problems,
        [Problem::RotateAnnotation {
            secret: "k8s-133-api-server-certificate".into(),
            value: "yes please".into()
        }]
    );
    // A stamp the operator wrote is no problem.
    let secret = observed
        .secrets
        .get_mut("api-server-certificate")
        .expect("stored");
    secret.metadata.annotations =
        Some([(labels::ROTATE.to_string(), "2026-01-02T03:04:05Z".to_string())].into());
    assert!(run(&observed).problems.is_empty());
}

/// `deployment`, stored and rolled out: every replica runs its template.
fn rolled_out(deployment: Option<&Deployment>) -> Option<Deployment> {
    let mut deployment = deployment?.clone();
    let replicas = deployment.spec.replicas;
    deployment.metadata.generation = Some(1);
    deployment.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
        observed_generation: Some(1),
        replicas,
        updated_replicas: replicas,
        ready_replicas: replicas,
        ..Default::default()
    });
    Some(deployment)
}

/// Stores `written` over `observed`, our field manager's last change a minute ago
/// (so the next pass finds the batch settled).
fn store(observed: &mut Observed, written: BTreeMap<String, Secret>) {
    let a_minute_ago = Timestamp::now() - std::time::Duration::from_secs(60);
    for (suffix, mut secret) in written {
        secret.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(labels::FIELD_MANAGER.into()),
            operation: Some("Apply".into()),
            time: Some(Time(a_minute_ago)),
            ..ManagedFieldsEntry::default()
        }]);
        observed.secrets.insert(suffix, secret);
    }
}

/// The tenant CA's client certificates as stored: how many its new CA signs.
fn clients_moved(secrets: &BTreeMap<String, Secret>) -> crate::pki::Moved {
    let data: BTreeMap<&str, SecretData> = secrets
        .iter()
        .map(|(suffix, secret)| (suffix.as_str(), secret_data(secret)))
        .collect();
    let ca =
        StoredCa::load(&catalog::TENANT_CA, &data[catalog::TENANT_CA.secret_suffix]).expect("the tenant CA");
    crate::pki::Moved::count_clients(
        &catalog::TENANT_CA,
        &ca,
        |s| data.get(s),
        OffsetDateTime::now_utc(),
    )
}

#[test]
fn an_operator_killed_while_clients_move_finishes_the_move_before_the_control_plane_rolls() {
    let mut observed = provisioned(&datastore_ca());
    observed.deployment = rolled_out(observed.deployment.as_ref());
    observed
        .secrets
        .get_mut(catalog::TENANT_CA.secret_suffix)
        .expect("stored")
        .metadata
        .annotations = Some(BTreeMap::from([(labels::ROTATE.to_string(), String::new())]));

    // Prepare: the bundles take the new CA and roll out, until the pass that moves clients.
    let mut moving = None;
    for _ in 0..10 {
        let out = run(&observed);
        let mut after = observed.secrets.clone();
        after.extend(secrets(&out));
        if clients_moved(&after).moved > 0 {
            moving = Some(out);
            break;
        }
        store(&mut observed, secrets(&out));
        observed.deployment = rolled_out(deployment_of(&out));
    }
    let moving = moving.expect("a pass moves the client certificates to the new CA");
    let mut written = secrets(&moving);
    assert!(
        written.len() > 1,
        "clients move in one pass: {:?}",
        written.keys()
    );

    // The operator dies after storing all but one of them; the Deployment is unchanged.
    let (left, _) = written.pop_last().expect("a Secret left unwritten");
    let deployed = observed
        .deployment
        .as_ref()
        .and_then(deployment::deployed_checksum);
    store(&mut observed, written);
    assert!(
        !clients_moved(&observed.secrets).all(),
        "{left} still carries the old CA's certificate"
    );

    // The restarted operator finishes the move first: the control plane still trusts the new CA.
    let restarted = run(&observed);
    let finished = secrets(&restarted);
    assert_eq!(finished.keys().collect::<Vec<_>>(), [&left]);
    assert_eq!(
        deployment_of(&restarted).and_then(deployment::deployed_checksum),
        deployed,
        "no rollout to the partly moved material"
    );
    store(&mut observed, finished);
    assert!(clients_moved(&observed.secrets).all());

    // Then one rollout carries the whole move.
    let settled = run(&observed);
    assert!(secrets(&settled).is_empty());
    assert_ne!(
        deployment_of(&settled).and_then(deployment::deployed_checksum),
        deployed
    );
}
