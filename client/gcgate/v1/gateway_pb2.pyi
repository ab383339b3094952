from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("version", "uptime_seconds", "pid", "socket_path", "state_dir", "backends", "login", "tasks", "store", "reload", "config_file")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    SOCKET_PATH_FIELD_NUMBER: _ClassVar[int]
    STATE_DIR_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    RELOAD_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FILE_FIELD_NUMBER: _ClassVar[int]
    version: str
    uptime_seconds: float
    pid: int
    socket_path: str
    state_dir: str
    backends: _containers.RepeatedCompositeFieldContainer[BackendStatus]
    login: LoginState
    tasks: TaskCounts
    store: StoreStatus
    reload: ReloadState
    config_file: str
    def __init__(self, version: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., pid: _Optional[int] = ..., socket_path: _Optional[str] = ..., state_dir: _Optional[str] = ..., backends: _Optional[_Iterable[_Union[BackendStatus, _Mapping]]] = ..., login: _Optional[_Union[LoginState, _Mapping]] = ..., tasks: _Optional[_Union[TaskCounts, _Mapping]] = ..., store: _Optional[_Union[StoreStatus, _Mapping]] = ..., reload: _Optional[_Union[ReloadState, _Mapping]] = ..., config_file: _Optional[str] = ...) -> None: ...

class ReloadState(_message.Message):
    __slots__ = ("last_reload_at", "ok", "error")
    LAST_RELOAD_AT_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    last_reload_at: float
    ok: bool
    error: str
    def __init__(self, last_reload_at: _Optional[float] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class BackendStatus(_message.Message):
    __slots__ = ("name", "state", "endpoint_id", "details_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    endpoint_id: str
    details_json: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., details_json: _Optional[str] = ...) -> None: ...

class LoginState(_message.Message):
    __slots__ = ("state", "identity")
    STATE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    state: str
    identity: str
    def __init__(self, state: _Optional[str] = ..., identity: _Optional[str] = ...) -> None: ...

class TaskCounts(_message.Message):
    __slots__ = ("pending", "success", "failed", "cancelled", "reused")
    PENDING_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    pending: int
    success: int
    failed: int
    cancelled: int
    reused: int
    def __init__(self, pending: _Optional[int] = ..., success: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ..., reused: _Optional[int] = ...) -> None: ...

class StoreStatus(_message.Message):
    __slots__ = ("size_bytes", "size_limit_bytes", "functions", "task_records", "retention_days", "damaged_moved_to", "unread_retention_days")
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SIZE_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    TASK_RECORDS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_MOVED_TO_FIELD_NUMBER: _ClassVar[int]
    UNREAD_RETENTION_DAYS_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    size_limit_bytes: int
    functions: int
    task_records: int
    retention_days: float
    damaged_moved_to: str
    unread_retention_days: float
    def __init__(self, size_bytes: _Optional[int] = ..., size_limit_bytes: _Optional[int] = ..., functions: _Optional[int] = ..., task_records: _Optional[int] = ..., retention_days: _Optional[float] = ..., damaged_moved_to: _Optional[str] = ..., unread_retention_days: _Optional[float] = ...) -> None: ...

class FunctionMeta(_message.Message):
    __slots__ = ("python_version", "sdk_version", "serde_identifier")
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERDE_IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    python_version: str
    sdk_version: str
    serde_identifier: str
    def __init__(self, python_version: _Optional[str] = ..., sdk_version: _Optional[str] = ..., serde_identifier: _Optional[str] = ...) -> None: ...

class RegisterFunctionRequest(_message.Message):
    __slots__ = ("function_name", "function_code", "serialized", "meta", "description", "public", "group")
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_CODE_FIELD_NUMBER: _ClassVar[int]
    SERIALIZED_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    function_name: str
    function_code: str
    serialized: bool
    meta: FunctionMeta
    description: str
    public: bool
    group: str
    def __init__(self, function_name: _Optional[str] = ..., function_code: _Optional[str] = ..., serialized: _Optional[bool] = ..., meta: _Optional[_Union[FunctionMeta, _Mapping]] = ..., description: _Optional[str] = ..., public: _Optional[bool] = ..., group: _Optional[str] = ...) -> None: ...

class RegisterFunctionResponse(_message.Message):
    __slots__ = ("function_id", "created")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    created: bool
    def __init__(self, function_id: _Optional[str] = ..., created: _Optional[bool] = ...) -> None: ...

class GetFunctionRequest(_message.Message):
    __slots__ = ("function_id",)
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    def __init__(self, function_id: _Optional[str] = ...) -> None: ...

class FunctionInfo(_message.Message):
    __slots__ = ("function_id", "function_name", "function_code", "serialized", "meta", "description", "public", "group", "created_at")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_CODE_FIELD_NUMBER: _ClassVar[int]
    SERIALIZED_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    function_name: str
    function_code: str
    serialized: bool
    meta: FunctionMeta
    description: str
    public: bool
    group: str
    created_at: float
    def __init__(self, function_id: _Optional[str] = ..., function_name: _Optional[str] = ..., function_code: _Optional[str] = ..., serialized: _Optional[bool] = ..., meta: _Optional[_Union[FunctionMeta, _Mapping]] = ..., description: _Optional[str] = ..., public: _Optional[bool] = ..., group: _Optional[str] = ..., created_at: _Optional[float] = ...) -> None: ...

class SubmitOptions(_message.Message):
    __slots__ = ("task_group_id", "resource_specification_json", "user_endpoint_config_json", "result_serializers", "user_runtime_json", "reuse_results")
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_SPECIFICATION_JSON_FIELD_NUMBER: _ClassVar[int]
    USER_ENDPOINT_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_SERIALIZERS_FIELD_NUMBER: _ClassVar[int]
    USER_RUNTIME_JSON_FIELD_NUMBER: _ClassVar[int]
    REUSE_RESULTS_FIELD_NUMBER: _ClassVar[int]
    task_group_id: str
    resource_specification_json: str
    user_endpoint_config_json: str
    result_serializers: _containers.RepeatedScalarFieldContainer[str]
    user_runtime_json: str
    reuse_results: bool
    def __init__(self, task_group_id: _Optional[str] = ..., resource_specification_json: _Optional[str] = ..., user_endpoint_config_json: _Optional[str] = ..., result_serializers: _Optional[_Iterable[str]] = ..., user_runtime_json: _Optional[str] = ..., reuse_results: _Optional[bool] = ...) -> None: ...

class JsonArguments(_message.Message):
    __slots__ = ("args_json", "kwargs_json")
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    KWARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    args_json: str
    kwargs_json: str
    def __init__(self, args_json: _Optional[str] = ..., kwargs_json: _Optional[str] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("endpoint_id", "function_id", "options", "payload", "json_arguments")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    JSON_ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    function_id: str
    options: SubmitOptions
    payload: str
    json_arguments: JsonArguments
    def __init__(self, endpoint_id: _Optional[str] = ..., function_id: _Optional[str] = ..., options: _Optional[_Union[SubmitOptions, _Mapping]] = ..., payload: _Optional[str] = ..., json_arguments: _Optional[_Union[JsonArguments, _Mapping]] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("task_id", "task_group_id", "endpoint_id", "request_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_group_id: str
    endpoint_id: str
    request_id: str
    def __init__(self, task_id: _Optional[str] = ..., task_group_id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class BatchTasks(_message.Message):
    __slots__ = ("function_id", "payloads", "json_arguments")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOADS_FIELD_NUMBER: _ClassVar[int]
    JSON_ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    payloads: _containers.RepeatedScalarFieldContainer[str]
    json_arguments: _containers.RepeatedCompositeFieldContainer[JsonArguments]
    def __init__(self, function_id: _Optional[str] = ..., payloads: _Optional[_Iterable[str]] = ..., json_arguments: _Optional[_Iterable[_Union[JsonArguments, _Mapping]]] = ...) -> None: ...

class BatchRunRequest(_message.Message):
    __slots__ = ("endpoint_id", "tasks", "options")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    tasks: _containers.RepeatedCompositeFieldContainer[BatchTasks]
    options: SubmitOptions
    def __init__(self, endpoint_id: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[BatchTasks, _Mapping]]] = ..., options: _Optional[_Union[SubmitOptions, _Mapping]] = ...) -> None: ...

class FunctionTaskIds(_message.Message):
    __slots__ = ("function_id", "task_ids")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, function_id: _Optional[str] = ..., task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class BatchRunResponse(_message.Message):
    __slots__ = ("request_id", "task_group_id", "endpoint_id", "tasks")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    task_group_id: str
    endpoint_id: str
    tasks: _containers.RepeatedCompositeFieldContainer[FunctionTaskIds]
    def __init__(self, request_id: _Optional[str] = ..., task_group_id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[FunctionTaskIds, _Mapping]]] = ...) -> None: ...

class GetResultRequest(_message.Message):
    __slots__ = ("task_id", "wait_seconds")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    wait_seconds: float
    def __init__(self, task_id: _Optional[str] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class TaskRecord(_message.Message):
    __slots__ = ("task_id", "status", "pending", "result", "exception", "completion_t", "function_id", "endpoint_id", "task_group_id", "created_at", "details_json", "reused_from", "pending_reason", "function_name", "result_json")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    EXCEPTION_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_T_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    REUSED_FROM_FIELD_NUMBER: _ClassVar[int]
    PENDING_REASON_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    status: str
    pending: bool
    result: str
    exception: str
    completion_t: str
    function_id: str
    endpoint_id: str
    task_group_id: str
    created_at: float
    details_json: str
    reused_from: str
    pending_reason: str
    function_name: str
    result_json: str
    def __init__(self, task_id: _Optional[str] = ..., status: _Optional[str] = ..., pending: _Optional[bool] = ..., result: _Optional[str] = ..., exception: _Optional[str] = ..., completion_t: _Optional[str] = ..., function_id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., task_group_id: _Optional[str] = ..., created_at: _Optional[float] = ..., details_json: _Optional[str] = ..., reused_from: _Optional[str] = ..., pending_reason: _Optional[str] = ..., function_name: _Optional[str] = ..., result_json: _Optional[str] = ...) -> None: ...

class GetBatchResultRequest(_message.Message):
    __slots__ = ("task_ids", "skip_unknown")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    SKIP_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    skip_unknown: bool
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ..., skip_unknown: _Optional[bool] = ...) -> None: ...

class GetBatchResultResponse(_message.Message):
    __slots__ = ("tasks", "unknown_task_ids")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskRecord]
    unknown_task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskRecord, _Mapping]]] = ..., unknown_task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchTasksRequest(_message.Message):
    __slots__ = ("task_ids",)
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskRecordBatch(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskRecord]
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskRecord, _Mapping]]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("limit", "status", "include_results", "function_id", "since", "endpoint_id")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RESULTS_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    limit: int
    status: str
    include_results: bool
    function_id: str
    since: float
    endpoint_id: str
    def __init__(self, limit: _Optional[int] = ..., status: _Optional[str] = ..., include_results: _Optional[bool] = ..., function_id: _Optional[str] = ..., since: _Optional[float] = ..., endpoint_id: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskRecord]
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskRecord, _Mapping]]] = ...) -> None: ...

class EndpointRequest(_message.Message):
    __slots__ = ("endpoint_id",)
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    def __init__(self, endpoint_id: _Optional[str] = ...) -> None: ...

class EndpointDocument(_message.Message):
    __slots__ = ("endpoint_id", "json")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    json: str
    def __init__(self, endpoint_id: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class ListEndpointsRequest(_message.Message):
    __slots__ = ("role",)
    ROLE_FIELD_NUMBER: _ClassVar[int]
    role: str
    def __init__(self, role: _Optional[str] = ...) -> None: ...

class ListEndpointsResponse(_message.Message):
    __slots__ = ("endpoints_json",)
    ENDPOINTS_JSON_FIELD_NUMBER: _ClassVar[int]
    endpoints_json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, endpoints_json: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteFunctionRequest(_message.Message):
    __slots__ = ("function_id",)
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    def __init__(self, function_id: _Optional[str] = ...) -> None: ...

class DeleteFunctionResponse(_message.Message):
    __slots__ = ("deleted_at_globus", "json")
    DELETED_AT_GLOBUS_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    deleted_at_globus: bool
    json: str
    def __init__(self, deleted_at_globus: _Optional[bool] = ..., json: _Optional[str] = ...) -> None: ...

class GetTaskGroupRequest(_message.Message):
    __slots__ = ("task_group_id",)
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    task_group_id: str
    def __init__(self, task_group_id: _Optional[str] = ...) -> None: ...

class GetTaskGroupResponse(_message.Message):
    __slots__ = ("task_group_id", "task_ids")
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    task_group_id: str
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_group_id: _Optional[str] = ..., task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CancelTasksRequest(_message.Message):
    __slots__ = ("task_ids",)
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CancelledTask(_message.Message):
    __slots__ = ("task_id", "cancelled", "status", "message")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    cancelled: bool
    status: str
    message: str
    def __init__(self, task_id: _Optional[str] = ..., cancelled: _Optional[bool] = ..., status: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CancelTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[CancelledTask]
    def __init__(self, tasks: _Optional[_Iterable[_Union[CancelledTask, _Mapping]]] = ...) -> None: ...

class ServiceVersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServiceVersionResponse(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class StartLoginRequest(_message.Message):
    __slots__ = ("force",)
    FORCE_FIELD_NUMBER: _ClassVar[int]
    force: bool
    def __init__(self, force: _Optional[bool] = ...) -> None: ...

class StartLoginResponse(_message.Message):
    __slots__ = ("login_id", "authorize_url", "expires_in_seconds")
    LOGIN_ID_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZE_URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    login_id: str
    authorize_url: str
    expires_in_seconds: float
    def __init__(self, login_id: _Optional[str] = ..., authorize_url: _Optional[str] = ..., expires_in_seconds: _Optional[float] = ...) -> None: ...

class CompleteLoginRequest(_message.Message):
    __slots__ = ("login_id", "auth_code")
    LOGIN_ID_FIELD_NUMBER: _ClassVar[int]
    AUTH_CODE_FIELD_NUMBER: _ClassVar[int]
    login_id: str
    auth_code: str
    def __init__(self, login_id: _Optional[str] = ..., auth_code: _Optional[str] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("login", "username", "name", "email")
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    login: LoginState
    username: str
    name: str
    email: str
    def __init__(self, login: _Optional[_Union[LoginState, _Mapping]] = ..., username: _Optional[str] = ..., name: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

class ForgetTasksRequest(_message.Message):
    __slots__ = ("task_ids", "in_flight")
    TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    task_ids: _containers.RepeatedScalarFieldContainer[str]
    in_flight: bool
    def __init__(self, task_ids: _Optional[_Iterable[str]] = ..., in_flight: _Optional[bool] = ...) -> None: ...

class ForgetTasksResponse(_message.Message):
    __slots__ = ("forgotten", "in_flight", "unknown_task_ids", "bytes_freed", "size_bytes")
    FORGOTTEN_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    forgotten: int
    in_flight: int
    unknown_task_ids: _containers.RepeatedScalarFieldContainer[str]
    bytes_freed: int
    size_bytes: int
    def __init__(self, forgotten: _Optional[int] = ..., in_flight: _Optional[int] = ..., unknown_task_ids: _Optional[_Iterable[str]] = ..., bytes_freed: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class PurgeTasksRequest(_message.Message):
    __slots__ = ("older_than_seconds", "status", "endpoint_id", "function_id", "task_group_id", "retrieved", "dry_run")
    OLDER_THAN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    RETRIEVED_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    older_than_seconds: float
    status: str
    endpoint_id: str
    function_id: str
    task_group_id: str
    retrieved: bool
    dry_run: bool
    def __init__(self, older_than_seconds: _Optional[float] = ..., status: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., function_id: _Optional[str] = ..., task_group_id: _Optional[str] = ..., retrieved: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class PurgeTasksResponse(_message.Message):
    __slots__ = ("tasks", "succeeded", "record_bytes", "bytes_freed", "size_bytes", "sample_task_ids", "dry_run", "failed")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    RECORD_BYTES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    tasks: int
    succeeded: int
    record_bytes: int
    bytes_freed: int
    size_bytes: int
    sample_task_ids: _containers.RepeatedScalarFieldContainer[str]
    dry_run: bool
    failed: int
    def __init__(self, tasks: _Optional[int] = ..., succeeded: _Optional[int] = ..., record_bytes: _Optional[int] = ..., bytes_freed: _Optional[int] = ..., size_bytes: _Optional[int] = ..., sample_task_ids: _Optional[_Iterable[str]] = ..., dry_run: _Optional[bool] = ..., failed: _Optional[int] = ...) -> None: ...

class GetMetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetMetricsResponse(_message.Message):
    __slots__ = ("text", "content_type")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    text: str
    content_type: str
    def __init__(self, text: _Optional[str] = ..., content_type: _Optional[str] = ...) -> None: ...

class ListFunctionsRequest(_message.Message):
    __slots__ = ("limit", "name", "include_deleted")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    limit: int
    name: str
    include_deleted: bool
    def __init__(self, limit: _Optional[int] = ..., name: _Optional[str] = ..., include_deleted: _Optional[bool] = ...) -> None: ...

class ListFunctionsResponse(_message.Message):
    __slots__ = ("functions",)
    FUNCTIONS_FIELD_NUMBER: _ClassVar[int]
    functions: _containers.RepeatedCompositeFieldContainer[FunctionSummary]
    def __init__(self, functions: _Optional[_Iterable[_Union[FunctionSummary, _Mapping]]] = ...) -> None: ...

class FunctionSummary(_message.Message):
    __slots__ = ("function_id", "function_name", "registered_at", "description", "serialized", "deleted_at", "python_version")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_NAME_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SERIALIZED_FIELD_NUMBER: _ClassVar[int]
    DELETED_AT_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    function_id: str
    function_name: str
    registered_at: float
    description: str
    serialized: bool
    deleted_at: float
    python_version: str
    def __init__(self, function_id: _Optional[str] = ..., function_name: _Optional[str] = ..., registered_at: _Optional[float] = ..., description: _Optional[str] = ..., serialized: _Optional[bool] = ..., deleted_at: _Optional[float] = ..., python_version: _Optional[str] = ...) -> None: ...
