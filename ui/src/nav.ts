/** In-app navigation between views (job -> mixer -> player); the host is not involved. */
import type { Route } from "./logic/route";

export type Navigate = (route: Route) => void;
