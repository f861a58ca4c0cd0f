export * from "./ApiKeys.ts"
export * from "./MerchantRepository.ts"
export * from "./ApiKeyCache.ts"
export * from "./Onboarding.ts"
