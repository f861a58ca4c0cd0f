import { Config, Effect, type Option, Schema, SchemaIssue } from "effect"

/**
 * Every setting read from the environment has bounds (TIGER_STYLE: a limit on everything), and a
 * value outside them fails at start-up with a message naming the variable and its bounds, never
 * later at run time (a `COMPLETER_BATCH` of 5000 used to fail every completer round instead).
 * Each package keeps its settings in one bounds table next to its defaults, shared by the
 * configuration and by the option checks of its `layerWith`.
 */
export interface IntBounds {
  readonly min: number
  readonly max: number
}

export const isWithin = (value: number, bounds: IntBounds): boolean =>
  Number.isInteger(value) && value >= bounds.min && value <= bounds.max

/** An integer setting within `bounds`, `fallback` when the variable is not set. */
export const boundedInt = (name: string, bounds: IntBounds, fallback: number): Config.Config<number> =>
  boundedIntSetting(name, bounds).pipe(Config.withDefault(fallback))

const boundedIntSetting = (name: string, bounds: IntBounds): Config.Config<number> =>
  Config.schema(
    Schema.Int.check(Schema.isBetween(
      { minimum: bounds.min, maximum: bounds.max },
      { message: `${name} must be an integer between ${bounds.min} and ${bounds.max}` }
    )),
    name
  )

/**
 * An integer setting within `bounds` when set, none when unset: for a default that follows another
 * setting (`RATE_LIMIT_MERCHANT_IN_FLIGHT_MAX`: half of `DATABASE_POOL_SIZE`).
 */
export const optionalBoundedInt = (name: string, bounds: IntBounds): Config.Config<Option.Option<number>> =>
  Config.option(boundedIntSetting(name, bounds))

/**
 * An integer setting that is 0 (the feature off) or within `bounds` (a loop's interval: 1..999 ms
 * would be a busy loop, refused at start-up like any value out of bounds, not when the loop starts).
 */
export const offOrBoundedInt = (name: string, bounds: IntBounds, fallback: number): Config.Config<number> =>
  Config.schema(
    Schema.Int.check(Schema.makeFilter(
      (value: number) => value === 0 || isWithin(value, bounds),
      { message: `${name} must be 0 (off) or an integer between ${bounds.min} and ${bounds.max}` }
    )),
    name
  ).pipe(Config.withDefault(fallback))

/**
 * A configuration refused as a whole (each value within its bounds, together impossible): the same
 * ConfigError at start-up as a value out of bounds, with `message` naming the variables.
 */
export const configRefused = (message: string) =>
  Effect.fail(new Config.ConfigError(new Schema.SchemaError(new SchemaIssue.InvalidValue({ message }))))

export interface StringBounds {
  readonly length_max: number
  /** When set, the whole value must match it (checked after the length). */
  readonly pattern?: RegExp
  /** What the pattern means, for the error message. */
  readonly expected?: string
}

/** A string setting of at most `length_max` characters (and of the given pattern). */
export const boundedString = (name: string, bounds: StringBounds, fallback: string): Config.Config<string> =>
  Config.schema(boundedStringSchema(name, bounds), name).pipe(Config.withDefault(fallback))

export const boundedStringSchema = (name: string, bounds: StringBounds) =>
  Schema.String.check(
    Schema.isMaxLength(bounds.length_max, { message: `${name} must be at most ${bounds.length_max} characters` }),
    Schema.isPattern(bounds.pattern ?? /^[\s\S]*$/, {
      message: `${name} must be ${bounds.expected ?? "a string"}`
    })
  )

/**
 * Checks options handed to a `layerWith` against the same bounds table (tests pass options
 * directly, bypassing the environment): an option out of bounds is a bug, a defect at start-up.
 */
export const assertWithin = <K extends string>(
  component: string,
  options: Readonly<Record<NoInfer<K>, number>>,
  bounds: Readonly<Record<K, IntBounds>>
): void => {
  for (const name of Object.keys(bounds).filter((key): key is K => Object.hasOwn(bounds, key))) {
    const bound = bounds[name]
    const value = options[name]
    if (!isWithin(value, bound)) {
      throw new RangeError(`${component}: ${name} must be an integer between ${bound.min} and ${bound.max}, got ${value}`)
    }
  }
}
