//! The operations each served resource has, in a form both document writers (v2 and v3) render:
//! one [`PathItem`] per URL template, the operations under it, their parameters and bodies.
//! Operation ids, actions and parameters follow upstream's published spec.

use kaji_api::ResourceInfo;

use crate::definitions::{DELETE_OPTIONS, PATCH, STATUS, WATCH_EVENT, definition_name};

/// One URL template and its operations.
pub(crate) struct PathItem {
    pub path: String,
    /// Parameters shared by every operation (path parameters, `pretty`, watch's query).
    pub params: Vec<Param>,
    pub operations: Vec<Operation>,
}

pub(crate) struct Operation {
    /// HTTP method in lower case, as the documents key operations.
    pub method: &'static str,
    /// `x-kubernetes-action`.
    pub action: &'static str,
    pub operation_id: String,
    pub description: String,
    pub tag: String,
    /// `x-kubernetes-group-version-kind` of the operation.
    pub gvk: (String, String, String),
    pub params: Vec<Param>,
    /// Request body schema: definition name, and whether the body is required.
    pub body: Option<(&'static str, bool)>,
    /// Response codes and their schema.
    pub responses: Vec<(&'static str, Response)>,
    pub consumes: &'static [&'static str],
    pub produces: &'static [&'static str],
}

#[derive(Clone, Copy)]
pub(crate) enum Response {
    Definition(&'static str),
    String,
    None,
}

#[derive(Clone, Copy)]
pub(crate) struct Param {
    pub name: &'static str,
    /// "path" or "query".
    pub location: &'static str,
    /// "string", "integer" or "boolean".
    pub ty: &'static str,
    pub required: bool,
    pub description: &'static str,
}

const fn query(name: &'static str, ty: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: "query",
        ty,
        required: false,
        description,
    }
}

const PRETTY: Param = query(
    "pretty",
    "string",
    "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
);
const NAMESPACE: Param = Param {
    name: "namespace",
    location: "path",
    ty: "string",
    required: true,
    description: "object name and auth scope, such as for teams and projects",
};
const NAME: Param = Param {
    name: "name",
    location: "path",
    ty: "string",
    required: true,
    description: "name of the resource",
};
const PROXY_PATH: Param = Param {
    name: "path",
    location: "path",
    ty: "string",
    required: true,
    description: "path to the resource",
};
const ALLOW_WATCH_BOOKMARKS: Param = query(
    "allowWatchBookmarks",
    "boolean",
    "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion.",
);
const CONTINUE: Param = query(
    "continue",
    "string",
    "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue).",
);
const FIELD_SELECTOR: Param = query(
    "fieldSelector",
    "string",
    "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
);
const LABEL_SELECTOR: Param = query(
    "labelSelector",
    "string",
    "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
);
const LIMIT: Param = query(
    "limit",
    "integer",
    "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.",
);
const RESOURCE_VERSION: Param = query(
    "resourceVersion",
    "string",
    "resourceVersion sets a constraint on what resource versions a request may be served from. Defaults to unset.",
);
const RESOURCE_VERSION_MATCH: Param = query(
    "resourceVersionMatch",
    "string",
    "resourceVersionMatch determines how resourceVersion is applied to list calls. Defaults to unset.",
);
const SEND_INITIAL_EVENTS: Param = query(
    "sendInitialEvents",
    "boolean",
    "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection, followed by a \"Bookmark\" event.",
);
const TIMEOUT_SECONDS: Param = query(
    "timeoutSeconds",
    "integer",
    "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.",
);
const WATCH: Param = query(
    "watch",
    "boolean",
    "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.",
);
const DRY_RUN: Param = query(
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters. This field is required for apply requests (application/apply-patch) but optional for non-apply patch types (JsonPatch, MergePatch, StrategicMergePatch).",
);
const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: unknown fields are silently dropped from the object, and all but the last duplicate field are ignored. - Warn: a warning is sent via the standard warning response header for each unknown field that is dropped and each duplicate field encountered; the request still succeeds if there are no other errors. This is the default. - Strict: the request fails with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present; the error lists all unknown and duplicate fields encountered.",
);
const FORCE: Param = query(
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
);
const GRACE_PERIOD_SECONDS: Param = query(
    "gracePeriodSeconds",
    "integer",
    "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used.",
);
const IGNORE_STORE_READ_ERROR: Param = query(
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "boolean",
    "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error.",
);
const ORPHAN_DEPENDENTS: Param = query(
    "orphanDependents",
    "boolean",
    "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned.",
);
const PROPAGATION_POLICY: Param = query(
    "propagationPolicy",
    "string",
    "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. Acceptable values are: 'Orphan', 'Background', 'Foreground'.",
);

const LIST_PARAMS: &[Param] = &[
    ALLOW_WATCH_BOOKMARKS,
    CONTINUE,
    FIELD_SELECTOR,
    LABEL_SELECTOR,
    LIMIT,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
    WATCH,
];
const WRITE_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
const PATCH_PARAMS: &[Param] = &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE];
const DELETE_PARAMS: &[Param] = &[
    DRY_RUN,
    GRACE_PERIOD_SECONDS,
    IGNORE_STORE_READ_ERROR,
    ORPHAN_DEPENDENTS,
    PROPAGATION_POLICY,
];
const DELETE_COLLECTION_PARAMS: &[Param] = &[
    CONTINUE,
    DRY_RUN,
    FIELD_SELECTOR,
    GRACE_PERIOD_SECONDS,
    IGNORE_STORE_READ_ERROR,
    LABEL_SELECTOR,
    LIMIT,
    ORPHAN_DEPENDENTS,
    PROPAGATION_POLICY,
    RESOURCE_VERSION,
    RESOURCE_VERSION_MATCH,
    SEND_INITIAL_EVENTS,
    TIMEOUT_SECONDS,
];
const LOG_PARAMS: &[Param] = &[
    query(
        "container",
        "string",
        "The container for which to stream logs. Defaults to only container if there is one container in the pod.",
    ),
    query(
        "follow",
        "boolean",
        "Follow the log stream of the pod. Defaults to false.",
    ),
    query(
        "insecureSkipTLSVerifyBackend",
        "boolean",
        "insecureSkipTLSVerifyBackend indicates that the apiserver should not confirm the validity of the serving certificate of the backend it is connecting to.",
    ),
    query(
        "limitBytes",
        "integer",
        "If set, the number of bytes to read from the server before terminating the log output.",
    ),
    query(
        "previous",
        "boolean",
        "Return previous terminated container logs. Defaults to false.",
    ),
    query(
        "sinceSeconds",
        "integer",
        "A relative time in seconds before the current time from which to show logs.",
    ),
    query(
        "stream",
        "string",
        "Specify which container log stream to return to the client. Acceptable values are \"All\", \"Stdout\" and \"Stderr\".",
    ),
    query(
        "tailLines",
        "integer",
        "If set, the number of lines from the end of the logs to show.",
    ),
    query(
        "timestamps",
        "boolean",
        "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false.",
    ),
];
const EXEC_PARAMS: &[Param] = &[
    query(
        "command",
        "string",
        "Command is the remote command to execute. argv array. Not executed within a shell.",
    ),
    query(
        "container",
        "string",
        "Container in which to execute the command. Defaults to only container if there is only one container in the pod.",
    ),
    query(
        "stderr",
        "boolean",
        "Redirect the standard error stream of the pod for this call.",
    ),
    query(
        "stdin",
        "boolean",
        "Redirect the standard input stream of the pod for this call. Defaults to false.",
    ),
    query(
        "stdout",
        "boolean",
        "Redirect the standard output stream of the pod for this call.",
    ),
    query(
        "tty",
        "boolean",
        "TTY if true indicates that a tty will be allocated for the exec call. Defaults to false.",
    ),
];
const ATTACH_PARAMS: &[Param] = &[
    query(
        "container",
        "string",
        "The container in which to execute the command. Defaults to only container if there is only one container in the pod.",
    ),
    query(
        "stderr",
        "boolean",
        "Stderr if true indicates that stderr is to be redirected for the attach call. Defaults to true.",
    ),
    query(
        "stdin",
        "boolean",
        "Stdin if true, redirects the standard input stream of the pod for this call. Defaults to false.",
    ),
    query(
        "stdout",
        "boolean",
        "Stdout if true indicates that stdout is to be redirected for the attach call. Defaults to true.",
    ),
    query(
        "tty",
        "boolean",
        "TTY if true indicates that a tty will be allocated for the attach call. Defaults to false.",
    ),
];
const PORT_FORWARD_PARAMS: &[Param] = &[query(
    "ports",
    "integer",
    "List of ports to forward Required when using WebSockets",
)];
const PROXY_PARAMS: &[Param] = &[query(
    "path",
    "string",
    "Path is the URL path to use for the current proxy request.",
)];

const JSON_YAML_PROTOBUF: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const LIST_PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];
const LOG_PRODUCES: &[&str] = &[
    "text/plain",
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const ANY: &[&str] = &["*/*"];
pub(crate) const PATCH_CONSUMES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// "Core", "Apps", "RbacAuthorization", ... as upstream spells a group in operation ids; the tag
/// is the same with a lower-case first letter and `_<version>`.
pub(crate) fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "core".into();
    }
    let trimmed = group.strip_suffix(".k8s.io").unwrap_or(group);
    let mut out = String::new();
    for (i, part) in trimmed.split('.').enumerate() {
        if i == 0 {
            out.push_str(part);
        } else {
            out.push_str(&capitalize(part));
        }
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Everything needed to spell one resource's operations.
struct Names<'a> {
    r: &'a ResourceInfo,
    definition: &'static str,
    /// e.g. "AppsV1".
    gv: String,
    tag: String,
}

impl Names<'_> {
    fn gvk(&self) -> (String, String, String) {
        (
            self.r.group.into(),
            self.r.version.into(),
            self.r.kind.into(),
        )
    }

    /// e.g. "readAppsV1NamespacedDeploymentStatus".
    fn op_id(&self, verb: &str, namespaced: bool, suffix: &str) -> String {
        let ns = if namespaced { "Namespaced" } else { "" };
        format!("{verb}{}{ns}{}{suffix}", self.gv, self.r.kind)
    }

    #[allow(clippy::too_many_arguments)] // reason: a plain record of one operation's facts
    fn op(
        &self,
        method: &'static str,
        action: &'static str,
        operation_id: String,
        description: String,
        params: &[Param],
        body: Option<(&'static str, bool)>,
        responses: Vec<(&'static str, Response)>,
    ) -> Operation {
        let (consumes, produces) = match (method, action) {
            (_, "connect") => (ANY, ANY),
            ("patch", _) => (PATCH_CONSUMES, JSON_YAML_PROTOBUF),
            (_, "list" | "watch" | "watchlist") => (ANY, LIST_PRODUCES),
            _ => (ANY, JSON_YAML_PROTOBUF),
        };
        Operation {
            method,
            action,
            operation_id,
            description,
            tag: self.tag.clone(),
            gvk: self.gvk(),
            params: params.to_vec(),
            body,
            responses,
            consumes,
            produces,
        }
    }
}

fn ok(definition: &'static str) -> Vec<(&'static str, Response)> {
    vec![
        ("200", Response::Definition(definition)),
        ("401", Response::None),
    ]
}

fn written(definition: &'static str, codes: &[&'static str]) -> Vec<(&'static str, Response)> {
    let mut out: Vec<_> = codes
        .iter()
        .map(|c| (*c, Response::Definition(definition)))
        .collect();
    out.push(("401", Response::None));
    out
}

/// The path items of one resource; empty when its kind has no known schema.
pub(crate) fn resource_paths(r: &ResourceInfo) -> Vec<PathItem> {
    let Some(definition) = definition_name(r.group, r.version, r.kind) else {
        return Vec::new();
    };
    let list_definition = definition_name(r.group, r.version, &r.list_kind());
    resource_paths_of(r, definition, list_definition)
}

/// The path items of one resource whose kind and List are the given definitions (custom
/// resources name theirs).
pub(crate) fn resource_paths_of(
    r: &ResourceInfo,
    definition: &'static str,
    list_definition: Option<&'static str>,
) -> Vec<PathItem> {
    let group = group_camel(r.group);
    let names = Names {
        r,
        definition,
        gv: format!("{}{}", capitalize(&group), capitalize(r.version)),
        tag: format!("{group}_{}", r.version),
    };
    let has = |verb: &str| r.verbs.contains(&verb);
    let prefix = r.group_version_path();
    let ns_prefix = if r.namespaced {
        format!("{prefix}/namespaces/{{namespace}}")
    } else {
        prefix.clone()
    };
    let scope_params = |extra: &[Param]| {
        let mut params = Vec::new();
        if extra.iter().any(|p| p.name == "name") {
            params.push(NAME);
        }
        if r.namespaced {
            params.push(NAMESPACE);
        }
        params.extend(extra.iter().filter(|p| p.name != "name").copied());
        params.push(PRETTY);
        params
    };
    let kind = r.kind;
    let ns = r.namespaced;
    let mut items = Vec::new();

    // The collection: list, create, deletecollection.
    let mut ops = Vec::new();
    if has("list")
        && let Some(list) = list_definition
    {
        ops.push(names.op(
            "get",
            "list",
            names.op_id("list", ns, ""),
            format!("list or watch objects of kind {kind}"),
            LIST_PARAMS,
            None,
            ok(list),
        ));
    }
    if has("create") {
        ops.push(names.op(
            "post",
            "post",
            names.op_id("create", ns, ""),
            format!("create a {kind}"),
            WRITE_PARAMS,
            Some((definition, true)),
            written(definition, &["200", "201", "202"]),
        ));
    }
    if has("deletecollection") {
        ops.push(names.op(
            "delete",
            "deletecollection",
            format!(
                "delete{}Collection{}{kind}",
                names.gv,
                if ns { "Namespaced" } else { "" }
            ),
            format!("delete collection of {kind}"),
            DELETE_COLLECTION_PARAMS,
            Some((DELETE_OPTIONS, false)),
            ok(STATUS),
        ));
    }
    if !ops.is_empty() {
        items.push(PathItem {
            path: format!("{ns_prefix}/{}", r.plural),
            params: scope_params(&[]),
            operations: ops,
        });
    }

    // The object: read, replace, patch, delete.
    let item_path = format!("{ns_prefix}/{}/{{name}}", r.plural);
    let mut ops = Vec::new();
    if has("get") {
        ops.push(names.op(
            "get",
            "get",
            names.op_id("read", ns, ""),
            format!("read the specified {kind}"),
            &[],
            None,
            ok(definition),
        ));
    }
    if has("update") {
        ops.push(names.op(
            "put",
            "put",
            names.op_id("replace", ns, ""),
            format!("replace the specified {kind}"),
            WRITE_PARAMS,
            Some((definition, true)),
            written(definition, &["200", "201"]),
        ));
    }
    if has("patch") {
        ops.push(names.op(
            "patch",
            "patch",
            names.op_id("patch", ns, ""),
            format!("partially update the specified {kind}"),
            PATCH_PARAMS,
            Some((PATCH, true)),
            written(definition, &["200", "201"]),
        ));
    }
    if has("delete") {
        ops.push(names.op(
            "delete",
            "delete",
            names.op_id("delete", ns, ""),
            format!("delete a {kind}"),
            DELETE_PARAMS,
            Some((DELETE_OPTIONS, false)),
            written(STATUS, &["200", "202"]),
        ));
    }
    if !ops.is_empty() {
        items.push(PathItem {
            path: item_path.clone(),
            params: scope_params(&[NAME]),
            operations: ops,
        });
    }

    // Listing across namespaces.
    if ns
        && has("list")
        && let Some(list) = list_definition
    {
        let op = names.op(
            "get",
            "list",
            names.op_id("list", false, "ForAllNamespaces"),
            format!("list or watch objects of kind {kind}"),
            &[],
            None,
            ok(list),
        );
        let mut params = LIST_PARAMS.to_vec();
        params.push(PRETTY);
        items.push(PathItem {
            path: format!("{prefix}/{}", r.plural),
            params,
            operations: vec![op],
        });
    }

    // The deprecated watch paths, still what older clients use.
    if has("watch") {
        let ns_watch = if ns {
            format!("{prefix}/watch/namespaces/{{namespace}}")
        } else {
            format!("{prefix}/watch")
        };
        let mut watch_item =
            |path: String, name: bool, action: &'static str, op_id: String, description: String| {
                let mut params = Vec::new();
                if name {
                    params.push(NAME);
                }
                if ns && path.contains("{namespace}") {
                    params.push(NAMESPACE);
                }
                params.extend(LIST_PARAMS.iter().copied());
                params.push(PRETTY);
                let op = names.op(
                    "get",
                    action,
                    op_id,
                    description,
                    &[],
                    None,
                    ok(WATCH_EVENT),
                );
                items.push(PathItem {
                    path,
                    params,
                    operations: vec![op],
                });
            };
        watch_item(
            format!("{ns_watch}/{}", r.plural),
            false,
            "watchlist",
            names.op_id("watch", ns, "List"),
            format!(
                "watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."
            ),
        );
        watch_item(
            format!("{ns_watch}/{}/{{name}}", r.plural),
            true,
            "watch",
            names.op_id("watch", ns, ""),
            format!(
                "watch changes to an object of kind {kind}. deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter."
            ),
        );
        if ns {
            watch_item(
                format!("{prefix}/watch/{}", r.plural),
                false,
                "watchlist",
                names.op_id("watch", false, "ListForAllNamespaces"),
                format!(
                    "watch individual changes to a list of {kind}. deprecated: use the 'watch' parameter with a list operation instead."
                ),
            );
        }
    }

    for sub in r.subresources {
        items.extend(subresource_paths(
            &names,
            &item_path,
            sub,
            &scope_params(&[NAME]),
        ));
    }
    items
}

fn subresource_paths(
    names: &Names<'_>,
    item_path: &str,
    sub: &str,
    params: &[Param],
) -> Vec<PathItem> {
    let ns = names.r.namespaced;
    let kind = names.r.kind;
    let definition = names.definition;
    let suffix = match sub {
        "ephemeralcontainers" => "EphemeralContainers".to_string(),
        "portforward" => "Portforward".to_string(),
        other => capitalize(other),
    };
    let path = format!("{item_path}/{sub}");
    // A subresource posting another kind carries that kind's GVK, as upstream does.
    let with_gvk = |mut op: Operation, group: &str, version: &str, kind: &str| {
        op.gvk = (group.into(), version.into(), kind.into());
        op
    };
    let read_write = |def: &'static str, gvk: Option<(&str, &str, &str)>| {
        let mut ops = vec![
            names.op(
                "get",
                "get",
                names.op_id("read", ns, &suffix),
                format!("read {sub} of the specified {kind}"),
                &[],
                None,
                ok(def),
            ),
            names.op(
                "put",
                "put",
                names.op_id("replace", ns, &suffix),
                format!("replace {sub} of the specified {kind}"),
                WRITE_PARAMS,
                Some((def, true)),
                written(def, &["200", "201"]),
            ),
            names.op(
                "patch",
                "patch",
                names.op_id("patch", ns, &suffix),
                format!("partially update {sub} of the specified {kind}"),
                PATCH_PARAMS,
                Some((PATCH, true)),
                written(def, &["200", "201"]),
            ),
        ];
        if let Some((g, v, k)) = gvk {
            ops = ops.into_iter().map(|op| with_gvk(op, g, v, k)).collect();
        }
        ops
    };
    let create = |def: Option<&'static str>, g: &str, v: &str, k: &str| -> Option<Operation> {
        let def = def?;
        Some(with_gvk(
            names.op(
                "post",
                "post",
                names.op_id("create", ns, &suffix),
                format!("create {sub} of a {kind}"),
                WRITE_PARAMS,
                Some((def, true)),
                written(def, &["200", "201", "202"]),
            ),
            g,
            v,
            k,
        ))
    };
    // exec, attach, portforward and proxy: `connect` operations tagged with the options kind.
    let connect_item = |path: String,
                        methods: &[&'static str],
                        options_kind: &str,
                        query: &[Param],
                        with_path: bool| {
        let operations = methods
            .iter()
            .map(|&method| {
                let id = format!(
                    "connect{}{}{}{kind}{suffix}{}",
                    names.gv,
                    capitalize(method),
                    if ns { "Namespaced" } else { "" },
                    if with_path { "WithPath" } else { "" }
                );
                let description = format!(
                    "connect {} requests to {sub} of {kind}",
                    method.to_uppercase()
                );
                let responses = vec![("200", Response::String), ("401", Response::None)];
                let op = names.op(method, "connect", id, description, &[], None, responses);
                with_gvk(op, "", "v1", options_kind)
            })
            .collect();
        let mut item_params = vec![NAME];
        if ns {
            item_params.push(NAMESPACE);
        }
        if with_path {
            item_params.push(PROXY_PATH);
        }
        item_params.extend(query.iter().copied());
        PathItem {
            path,
            params: item_params,
            operations,
        }
    };
    const ALL_METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch"];

    let item = |operations: Vec<Operation>| PathItem {
        path: path.clone(),
        params: params.to_vec(),
        operations,
    };
    match sub {
        "scale" => vec![item(read_write(
            SCALE,
            Some(("autoscaling", "v1", "Scale")),
        ))],
        "binding" => create(definition_name("", "v1", "Binding"), "", "v1", "Binding")
            .map(|op| item(vec![op]))
            .into_iter()
            .collect(),
        "eviction" => create(
            definition_name("policy", "v1", "Eviction"),
            "policy",
            "v1",
            "Eviction",
        )
        .map(|op| item(vec![op]))
        .into_iter()
        .collect(),
        "token" => create(
            definition_name("authentication.k8s.io", "v1", "TokenRequest"),
            "authentication.k8s.io",
            "v1",
            "TokenRequest",
        )
        .map(|op| item(vec![op]))
        .into_iter()
        .collect(),
        "finalize" => vec![item(vec![names.op(
            "put",
            "put",
            names.op_id("replace", ns, &suffix),
            format!("replace finalize of the specified {kind}"),
            WRITE_PARAMS,
            Some((definition, true)),
            written(definition, &["200", "201"]),
        )])],
        "log" => {
            let op = names.op(
                "get",
                "get",
                names.op_id("read", ns, &suffix),
                format!("read log of the specified {kind}"),
                &[],
                None,
                vec![("200", Response::String), ("401", Response::None)],
            );
            let mut op = op;
            op.produces = LOG_PRODUCES;
            let mut item_params = params.to_vec();
            item_params.extend(LOG_PARAMS.iter().copied());
            vec![PathItem {
                path: path.clone(),
                params: item_params,
                operations: vec![op],
            }]
        }
        "exec" => vec![connect_item(
            path.clone(),
            &["get", "post"],
            &format!("{kind}ExecOptions"),
            EXEC_PARAMS,
            false,
        )],
        "attach" => vec![connect_item(
            path.clone(),
            &["get", "post"],
            &format!("{kind}AttachOptions"),
            ATTACH_PARAMS,
            false,
        )],
        "portforward" => vec![connect_item(
            path.clone(),
            &["get", "post"],
            &format!("{kind}PortForwardOptions"),
            PORT_FORWARD_PARAMS,
            false,
        )],
        "proxy" => vec![
            connect_item(
                path.clone(),
                ALL_METHODS,
                &format!("{kind}ProxyOptions"),
                PROXY_PARAMS,
                false,
            ),
            connect_item(
                format!("{path}/{{path}}"),
                ALL_METHODS,
                &format!("{kind}ProxyOptions"),
                PROXY_PARAMS,
                true,
            ),
        ],
        // status, ephemeralcontainers, resize, approval and anything else: the kind itself.
        _ => vec![item(read_write(definition, None))],
    }
}
