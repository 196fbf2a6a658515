import JSONRPC

extension Methods {
    /// Decodes a method's parameters as the method would, and does nothing
    /// else: for the fuzz target (Sources/pbc-fuzz), which feeds it whatever
    /// the framing and JSON-RPC decoding let through. An unknown method is
    /// the dispatcher's -32601; bad parameters throw their -32602.
    public static func decodeParams(method: String, params: JSONValue?) throws {
        switch method {
        case "ping": return
        case "session.hello": _ = try ParamsDecoder.decode(HelloParams.self, from: params)
        case "agency.list", "country.list", "sector.list", "workflow.list", "queue.list": _ = try ParamsDecoder.decode(ListParams.self, from: params)
        case "workflow.get": _ = try ParamsDecoder.decode(WorkflowGetParams.self, from: params)
        case "task.create": _ = try ParamsDecoder.decode(TaskParams.self, from: params)
        case "task.submit":
            guard case .object(var object)? = params, case .string? = object.removeValue(forKey: "idempotencyKey") else {
                throw ParamsDecoder.invalid("missing parameter idempotencyKey", parameter: "idempotencyKey")
            }
            _ = try ParamsDecoder.decode(TaskParams.self, from: .object(object))
        case "task.get": _ = try ParamsDecoder.decode(TaskKeyParams.self, from: params)
        case "task.list": _ = try ParamsDecoder.decode(TaskListParams.self, from: params)
        case "task.act": _ = try ParamsDecoder.decode(ActParams.self, from: params)
        case "task.update": _ = try ParamsDecoder.decode(UpdateParams.self, from: params)
        case "task.history": _ = try ParamsDecoder.decode(HistoryParams.self, from: params)
        case "task.comment": _ = try ParamsDecoder.decode(CommentParams.self, from: params)
        case "activity.get": _ = try ParamsDecoder.decode(ActivityGetParams.self, from: params)
        case "overlap.check": _ = try ParamsDecoder.decode(CheckParams.self, from: params)
        case "overlap.list": _ = try ParamsDecoder.decode(OverlapListParams.self, from: params)
        case "overlap.resolve": _ = try ParamsDecoder.decode(ResolveParams.self, from: params)
        case "report.whoWhatWhere": _ = try ParamsDecoder.decode(ReportParams.self, from: params)
        case "queue.tasks": _ = try ParamsDecoder.decode(QueueTasksParams.self, from: params)
        case "queue.claim": _ = try ParamsDecoder.decode(ClaimParams.self, from: params)
        case "task.assign": _ = try ParamsDecoder.decode(AssignParams.self, from: params)
        case "task.release": _ = try ParamsDecoder.decode(ReleaseParams.self, from: params)
        case "task.renew": _ = try ParamsDecoder.decode(RenewParams.self, from: params)
        case "event.subscribe": _ = try ParamsDecoder.decode(SubscribeParams.self, from: params)
        case "event.unsubscribe": _ = try ParamsDecoder.decode(UnsubscribeParams.self, from: params)
        default: throw RPCError(code: .methodNotFound, message: "no method named \(method)")
        }
    }
}
