export * from "./ApiKeys.ts"
export * from "./MerchantRepository.ts"
